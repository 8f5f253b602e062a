package pglisten_test

import (
	"context"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgrelay/pgrelay/internal/pglisten"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// SetTCP sets the keepalive and user timeout on the server's end (unless
// the URL does) and on the client's socket.
func TestSetTCP(t *testing.T) {
	t.Parallel()
	o := pglisten.TCP{KeepaliveIdle: 5 * time.Second, KeepaliveInterval: 1500 * time.Millisecond, KeepaliveCount: 3, UserTimeout: 10 * time.Second}
	url := testenv.DatabaseURL(t)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	cfg, err := pgx.ParseConfig(url + sep + "tcp_keepalives_count=7")
	if err != nil {
		t.Fatal(err)
	}
	pglisten.SetTCP(cfg, o)
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tcp, ok := conn.PgConn().Conn().(*net.TCPConn)
	if !ok {
		t.Fatalf("connection is %T, not TCP: set PGRELAY_TEST_DATABASE_URL to a host:port URL", conn.PgConn().Conn())
	}

	for name, want := range map[string]string{
		"tcp_keepalives_idle":     "5",
		"tcp_keepalives_interval": "2", // whole seconds, rounded up
		"tcp_keepalives_count":    "7", // the URL's
		"tcp_user_timeout":        "10000",
	} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT setting FROM pg_settings WHERE name = $1", name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("server %s = %s, want %s", name, got, want)
		}
	}

	raw, err := tcp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []struct {
		name  string
		level int
		opt   int
		want  int
	}{
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 5},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 2}, // whole seconds, rounded up
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 3},
		{"TCP_USER_TIMEOUT", syscall.IPPROTO_TCP, 0x12, 10000},
	} {
		var got int
		var gerr error
		if err := raw.Control(func(fd uintptr) { got, gerr = syscall.GetsockoptInt(int(fd), opt.level, opt.opt) }); err != nil {
			t.Fatal(err)
		}
		if gerr != nil || got != opt.want {
			t.Errorf("client %s = %d (%v), want %d", opt.name, got, gerr, opt.want)
		}
	}
}
