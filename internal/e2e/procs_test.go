package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tests that kill processes run the real binaries, built once per package
// run (without -race: they are what is tested; the test process has it).
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// TestMain removes the binaries built for process tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary returns the path of cmd/name (relay or edge), building both the
// first time.
func binary(t testing.TB, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		if binDir, buildErr = os.MkdirTemp("", "pgrelay-e2e-bin-"); buildErr != nil {
			return
		}
		gobin, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("the process tests build the binaries and need go on PATH: %w", err)
			return
		}
		cmd := exec.Command(gobin, "build", "-o", binDir+string(filepath.Separator), "./cmd/relay", "./cmd/edge")
		cmd.Dir = filepath.Join("..", "..") // the repository root, from internal/e2e
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/relay ./cmd/edge: %v\n%s", err, out)
			return
		}
		t.Logf("built relay and edge in %s", time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// osProc is a relay or edge binary running as a child process. The embedded
// proc gives its name and HTTP address to readyz, waitReadyz, waitLeader and
// dial; its stop method is not for child processes (use term or kill).
type osProc struct {
	*proc
	t      testing.TB
	bin    string
	args   []string // of bin; set by startBinaryArgs
	env    []string
	starts int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has exited
}

// startBinary runs bin with env (KEY=value; RELAY_* and EDGE_* variables of
// the test's own environment are not passed on) and serving HTTP on addr.
// Its output is kept and shown if the test fails; it is killed at cleanup.
func startBinary(t testing.TB, name, bin, addr string, env ...string) *osProc {
	t.Helper()
	return startBinaryArgs(t, name, bin, nil, addr, env...)
}

// startBinaryArgs is startBinary with arguments for bin, e.g. to run a
// binary in a network namespace: bin "ip", args "netns exec NS /path/relay"
// (ip execs it, so signals reach the binary itself).
func startBinaryArgs(t testing.TB, name, bin string, args []string, addr string, env ...string) *osProc {
	t.Helper()
	p := &osProc{proc: &proc{name: name, addr: addr, logs: &logBuf{}}, t: t, bin: bin, args: args, env: env}
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, p.logs.String())
		}
	})
	p.start()
	return p
}

// start runs the process (again), with the same environment and address.
func (p *osProc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.exited:
		default:
			p.t.Fatalf("%s: start while running", p.name)
		}
	}
	p.starts++
	fmt.Fprintf(p.logs, "=== start %d of %s at %s\n", p.starts, p.name, time.Now().Format("15:04:05.000"))
	cmd := exec.Command(p.bin, p.args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RELAY_") && !strings.HasPrefix(kv, "EDGE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, p.env...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(p.logs, "=== %s exited at %s: %v\n", p.name, time.Now().Format("15:04:05.000"), err)
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
}

// signal sends sig to the running process, if any, and waits until it exits.
func (p *osProc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		return fmt.Errorf("%s did not exit within 20s of %v", p.name, sig)
	}
}

// kill ends the process with SIGKILL, as a crash or an OOM kill would.
func (p *osProc) kill(t testing.TB) {
	t.Helper()
	if err := p.signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// term ends the process with SIGTERM (a graceful stop) and waits for it.
func (p *osProc) term(t testing.TB) {
	t.Helper()
	if err := p.signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// procs returns the embedded procs of ps, for waitLeader.
func procs(ps ...*osProc) []*proc {
	out := make([]*proc, len(ps))
	for i, p := range ps {
		out[i] = p.proc
	}
	return out
}
