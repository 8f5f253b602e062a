package e2e

import (
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgrelay/pgrelay/internal/edge"
	"github.com/pgrelay/pgrelay/internal/relay"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

var retryIn = regexp.MustCompile(`retry_in=([0-9.]+m?s)`)

// waitRetries waits until p has logged n retries of msg with growing delays,
// checking that it is still running.
func waitRetries(t *testing.T, p *proc, msg string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) instead of retrying", p.name, p.err)
		default:
		}
		var delays []time.Duration
		for _, line := range strings.Split(p.logs.String(), "\n") {
			if !strings.Contains(line, msg) {
				continue
			}
			m := retryIn.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("retry line without retry_in: %s", line)
			}
			d, _ := time.ParseDuration(m[1])
			delays = append(delays, d)
		}
		if len(delays) >= n {
			for i := 1; i < n; i++ {
				if delays[i] <= delays[i-1] {
					t.Fatalf("%s: retry delays do not back off: %v", p.name, delays)
				}
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: fewer than %d %q retries in 20s; logs:\n%s", p.name, n, msg, p.logs.String())
}

func expectNotReady(t *testing.T, p *proc, want string) {
	t.Helper()
	code, body, err := readyz(p)
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, want) {
		t.Fatalf("%s /readyz: got %d %q (%v), want 503 %q", p.name, code, body, err, want)
	}
}

func TestRelayWaitsOutUnreachableDatabase(t *testing.T) {
	r := startRelay(t, "relay", testenv.Name("nodb"), []string{"data"}, func(c *relay.Config) {
		c.DatabaseURL = "postgres://" + closedPort(t) + "/x?sslmode=disable&connect_timeout=2"
	})
	waitRetries(t, r, "postgres session ended", 4)
	expectNotReady(t, r, "connecting")
	r.stop(t)
}

func TestRelayWithoutRedisNeverLeads(t *testing.T) {
	r := startRelay(t, "relay", testenv.Name("noredis"), []string{"data"}, func(c *relay.Config) {
		c.RedisURL = "redis://" + closedPort(t) + "/0"
	})
	waitRetries(t, r, "cannot lead", 4)
	expectNotReady(t, r, "connecting")
	if strings.Contains(r.logs.String(), "role=leader") {
		t.Fatal("a relay that cannot reach Redis became leader")
	}
	r.stop(t)
}

func TestEdgeWaitsOutUnreachableRedis(t *testing.T) {
	cfg := func(c *edge.Config) { c.RedisURL = "redis://" + closedPort(t) + "/0" }
	e := startEdgeNoWait(t, "edge", testenv.Name("noredis"), cfg)
	waitRetries(t, e, "redis subscription lost", 4)
	expectNotReady(t, e, "redis subscription down")

	req, _ := http.NewRequest("GET", e.url("/ws?channel=data"), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("/ws while Redis is down: got %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	e.stop(t)
}

// Passwords in the URLs never appear in logs or probe answers, even while
// the servers cannot be reached.
func TestSecretsStayOutOfLogs(t *testing.T) {
	r := startRelay(t, "relay", testenv.Name("secret"), []string{"data"}, func(c *relay.Config) {
		c.DatabaseURL = "postgres://app:SECRETPW1@" + closedPort(t) + "/x?sslmode=disable&connect_timeout=1"
		c.RedisURL = "redis://app:SECRETPW2@" + closedPort(t) + "/0"
	})
	e := startEdgeNoWait(t, "edge", testenv.Name("secret"), func(c *edge.Config) {
		c.RedisURL = "redis://app:SECRETPW3@" + closedPort(t) + "/0"
	})
	waitRetries(t, r, "postgres session ended", 3)
	waitRetries(t, e, "redis subscription lost", 3)
	for _, p := range []*proc{r, e} {
		_, body, _ := readyz(p)
		for _, s := range []string{p.logs.String(), body} {
			if strings.Contains(s, "SECRETPW") {
				t.Errorf("%s leaks a password:\n%s", p.name, s)
			}
		}
	}
}
