package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// Bad configuration stops the edge at start, naming the variable.
func TestRunRefusesBadConfig(t *testing.T) {
	cases := []struct {
		name, key, value string
	}{
		{"bad redis url", "EDGE_REDIS_URL", "http://nope"},
		{"zero queue", "EDGE_QUEUE_SIZE", "0"},
		{"negative send buffer", "EDGE_SEND_BUFFER", "-1"},
		{"not a number", "EDGE_MAX_CHANNELS", "many"},
		{"negative drain", "EDGE_DRAIN_TIMEOUT", "-1s"},
		{"bad log format", "EDGE_LOG_FORMAT", "xml"},
		{"empty prefix", "EDGE_PREFIX", ""},
		{"typo", "EDGE_HTTP_ADRR", ":1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, kv := range os.Environ() {
				if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "EDGE_") {
					t.Setenv(k, "")
					os.Unsetenv(k)
				}
			}
			t.Setenv(tc.key, tc.value)
			var stdout, stderr bytes.Buffer
			if code := run(nil, &stdout, &stderr); code == 0 {
				t.Fatalf("exit code 0, want non-zero; stderr: %s", stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.key) {
				t.Fatalf("stderr %q does not name %s", stderr.String(), tc.key)
			}
		})
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("-h: exit %d, stderr %s", code, stderr.String())
	}
	for _, v := range []string{"EDGE_REDIS_URL", "EDGE_HTTP_ADDR", "EDGE_QUEUE_SIZE", "EDGE_PREFIX", "EDGE_DRAIN_TIMEOUT"} {
		if !strings.Contains(stdout.String(), v) {
			t.Errorf("-h output lacks %s", v)
		}
	}
}

// A password in a URL never reaches the error that names the variable.
func TestConfigErrorsHidePasswords(t *testing.T) {
	for _, url := range []string{
		"redis://user:SECRETPW@127.0.0.1:notaport/0",
		"redis://:SECRETPW@127.0.0.1:6379/notadb",
		"redis://u:SECRETPW@[::1/0",
	} {
		t.Setenv("EDGE_REDIS_URL", url)
		var stdout, stderr bytes.Buffer
		if code := run(nil, &stdout, &stderr); code == 0 {
			t.Fatalf("%s accepted", url)
		}
		if strings.Contains(stderr.String(), "SECRETPW") || !strings.Contains(stderr.String(), "EDGE_REDIS_URL") {
			t.Errorf("stderr for %s: %q", url, stderr.String())
		}
	}
}
