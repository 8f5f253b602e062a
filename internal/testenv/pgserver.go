package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresServer is a throwaway PostgreSQL cluster of a test's own, for
// tests that stop, restart or crash the server. It listens on 127.0.0.1 (and
// on Options.ListenAddresses) at a free port, keeps its data in a temp dir,
// trusts local connections as the postgres user, and is stopped and removed
// at cleanup. As root, initdb and the server run as the postgres user (they
// refuse to run as root), with their dirs owned by it.
type PostgresServer struct {
	t    testing.TB
	Port int
	opts PostgresOptions
	bin  string // directory of initdb, pg_ctl, postgres
	dir  string // root: data/, sock/, log
	as   []string
}

// PostgresOptions configures StartPostgres. The zero value is a plain
// server on 127.0.0.1.
type PostgresOptions struct {
	// ListenAddresses are addresses to listen on besides 127.0.0.1 (they
	// must exist when the server starts).
	ListenAddresses []string
	// HBA are pg_hba.conf lines added before the defaults, e.g.
	// "host all all 10.1.2.0/30 trust".
	HBA []string
	// Settings are extra server settings (name → value).
	Settings map[string]string
}

// StartPostgres creates and starts a cluster, or fails t saying what is
// missing: tests never skip for want of PostgreSQL.
func StartPostgres(t testing.TB, opts PostgresOptions) *PostgresServer {
	t.Helper()
	bin, err := postgresBin()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pgrelay-pg-")
	if err != nil {
		t.Fatal(err)
	}
	s := &PostgresServer{t: t, opts: opts, bin: bin, dir: dir}
	t.Cleanup(func() {
		s.stop("immediate", false)
		if t.Failed() {
			log, _ := os.ReadFile(s.logFile())
			t.Logf("--- PostgreSQL log (last 4 KiB) ---\n%s", tail(log, 4096))
		}
		os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, initdb needs the postgres user, which does not exist: %v (install PostgreSQL's Debian packages, or run the tests as another user)", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, d := range []string{dir, s.sockDir()} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		s.as = []string{"runuser", "-u", "postgres", "--"}
	} else if err := os.MkdirAll(s.sockDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := s.run("initdb", "-D", s.dataDir(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	if len(opts.HBA) > 0 {
		hba := filepath.Join(s.dataDir(), "pg_hba.conf")
		old, err := os.ReadFile(hba)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(hba, []byte(strings.Join(opts.HBA, "\n")+"\n"+string(old)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s.Start()
	t.Logf("PostgreSQL on port %d, initdb and start in %s", s.Port, time.Since(start).Round(time.Millisecond))
	return s
}

// postgresBin finds the directory of initdb and pg_ctl: on PATH, else the
// newest /usr/lib/postgresql/*/bin (Debian keeps them off PATH).
func postgresBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("initdb and pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin: install PostgreSQL (Debian: apt-get install -y postgresql)")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func (s *PostgresServer) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *PostgresServer) sockDir() string { return filepath.Join(s.dir, "sock") }
func (s *PostgresServer) logFile() string { return filepath.Join(s.dir, "sock", "postgres.log") }

// run runs a PostgreSQL program, as the postgres user when root.
func (s *PostgresServer) run(prog string, args ...string) ([]byte, error) {
	argv := append(append(append([]string(nil), s.as...), filepath.Join(s.bin, prog)), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

// URL is a connection URL for the postgres database over 127.0.0.1.
func (s *PostgresServer) URL() string { return s.URLOn("127.0.0.1") }

// URLOn is a connection URL for the postgres database via host, one of the
// addresses the server listens on.
func (s *PostgresServer) URLOn(host string) string {
	return fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", net.JoinHostPort(host, strconv.Itoa(s.Port)))
}

// Start starts the server (again) and waits until it accepts connections.
func (s *PostgresServer) Start() {
	s.t.Helper()
	addrs := append([]string{"127.0.0.1"}, s.opts.ListenAddresses...)
	o := []string{
		"-p", strconv.Itoa(s.Port), "-k", s.sockDir(),
		"-c", "listen_addresses=" + strings.Join(addrs, ","),
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
	}
	names := make([]string, 0, len(s.opts.Settings))
	for k := range s.opts.Settings {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		o = append(o, "-c", k+"="+s.opts.Settings[k])
	}
	if out, err := s.run("pg_ctl", "-D", s.dataDir(), "-l", s.logFile(), "-w", "-t", "30", "-o", strings.Join(o, " "), "start"); err != nil {
		log, _ := os.ReadFile(s.logFile())
		s.t.Fatalf("pg_ctl start: %v\n%s\nlog:\n%s", err, out, tail(log, 4096))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.URL())
		if err == nil {
			conn.Close(ctx)
			cancel()
			return
		}
		cancel()
		if time.Now().After(deadline) {
			s.t.Fatalf("PostgreSQL on port %d does not accept connections 10s after pg_ctl start: %v", s.Port, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop stops the server with pg_ctl's mode: "fast" (sessions are ended
// cleanly, then a checkpoint) or "immediate" (every process is killed; the
// next start recovers, as after a crash).
func (s *PostgresServer) Stop(mode string) {
	s.t.Helper()
	s.stop(mode, true)
}

func (s *PostgresServer) stop(mode string, must bool) {
	if _, err := os.Stat(filepath.Join(s.dataDir(), "postmaster.pid")); err != nil {
		return // not running
	}
	if out, err := s.run("pg_ctl", "-D", s.dataDir(), "-m", mode, "-w", "-t", "30", "stop"); err != nil && must {
		s.t.Fatalf("pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
}

// Restart stops the server with mode and starts it again.
func (s *PostgresServer) Restart(mode string) {
	s.t.Helper()
	s.Stop(mode)
	s.Start()
}

// Conn returns a new connection over 127.0.0.1, closed at cleanup.
func (s *PostgresServer) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
