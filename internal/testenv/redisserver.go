package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a throwaway redis-server of a test's own, for tests that
// stop, restart or kill Redis. It binds 127.0.0.1 on a free port and keeps
// its files in a temp dir; it is shut down at cleanup.
type RedisServer struct {
	t    testing.TB
	Port int
	dir  string
}

// StartRedis starts a throwaway Redis, or fails t saying what to install.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found: install Debian's redis-server (apt-get install -y redis-server); `make test` does it")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &RedisServer{t: t, Port: port, dir: t.TempDir()}
	s.Start()
	t.Cleanup(func() { s.Stop(false) })
	return s
}

// URL is the server's redis:// URL.
func (s *RedisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) }

// Start starts the server (again), loading the data a Stop(true) saved.
func (s *RedisServer) Start() {
	s.t.Helper()
	cmd := exec.Command("redis-server",
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
		"--daemonize", "yes", "--pidfile", filepath.Join(s.dir, "redis.pid"),
		"--logfile", filepath.Join(s.dir, "redis.log"))
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("start redis-server: %v: %s", err, out)
	}
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.Port)})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if rdb.Ping(context.Background()).Err() == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	s.t.Fatalf("redis-server on port %d did not answer within 10s; log:\n%s", s.Port, log)
}

// Stop shuts the server down, saving its data first if save is true (so
// that Start brings it back as it was), and waits until the port is closed.
func (s *RedisServer) Stop(save bool) {
	s.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.Port), MaxRetries: -1})
	defer rdb.Close()
	mode := "nosave"
	if save {
		mode = "save"
	}
	_ = rdb.Do(context.Background(), "shutdown", mode).Err() // the connection drops: no reply
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), 100*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Errorf("redis-server on port %d still answers 10s after SHUTDOWN", s.Port)
}
