package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// Bad configuration stops the relay at start, naming the variable.
func TestRunRefusesBadConfig(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no database", map[string]string{}, "RELAY_DATABASE_URL"},
		{"bad database url", map[string]string{"RELAY_DATABASE_URL": "postgres://x:5432/db?sslmode=bogus"}, "RELAY_DATABASE_URL"},
		{"bad redis url", map[string]string{"RELAY_REDIS_URL": "http://nope"}, "RELAY_REDIS_URL"},
		{"channel too long", map[string]string{"RELAY_CHANNELS": strings.Repeat("x", 64)}, "RELAY_CHANNELS"},
		{"empty channel", map[string]string{"RELAY_CHANNELS": "a,,b"}, "RELAY_CHANNELS"},
		{"bad duration", map[string]string{"RELAY_PING_INTERVAL": "soon"}, "RELAY_PING_INTERVAL"},
		{"bad log level", map[string]string{"RELAY_LOG_LEVEL": "loud"}, "RELAY_LOG_LEVEL"},
		{"typo", map[string]string{"RELAY_CHANNEL": "data"}, "RELAY_CHANNEL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t, "RELAY_")
			if _, ok := tc.env["RELAY_DATABASE_URL"]; !ok && tc.name != "no database" {
				t.Setenv("RELAY_DATABASE_URL", "postgres://127.0.0.1:1/x")
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(nil, &stdout, &stderr)
			if code == 0 {
				t.Fatalf("exit code 0, want non-zero; stderr: %s", stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q does not name %s", stderr.String(), tc.want)
			}
		})
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("-h: exit %d, stderr %s", code, stderr.String())
	}
	for _, v := range []string{"RELAY_DATABASE_URL", "RELAY_REDIS_URL", "RELAY_CHANNELS", "RELAY_HTTP_ADDR", "RELAY_LOCK_KEY", "RELAY_PREFIX"} {
		if !strings.Contains(stdout.String(), v) {
			t.Errorf("-h output lacks %s", v)
		}
	}
}

// clearEnv unsets every variable with prefix for the test's duration.
func clearEnv(t *testing.T, prefix string) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, prefix) {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}
