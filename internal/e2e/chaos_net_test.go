package e2e

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// netns is a network namespace joined to the test's own by a veth pair, so
// that a process inside can be cut off with a true black hole: frames are
// dropped without FIN, RST or ICMP, on the wire of that one process only.
// It needs root and iproute2 (`ip`), as the chaos suite does.
//
// The black hole gives each end of the pair a wrong neighbour (MAC) entry
// for the other: frames still leave, but the peer discards them as not
// addressed to it. Sends succeed, nothing is acknowledged, new connections
// hang in SYN_SENT: what a dead node or a dropped route looks like. (tc
// netem and iptables are not available in this kernel; this needs neither.)
type netns struct {
	name           string
	hostIf, nsIf   string
	hostIP, nsIP   string // the /30 of each end
	hostMAC, nsMAC string
}

// netnsSubnet picks a random 10.x.y.0/24 per test run for its namespaces,
// so that concurrent runs do not collide. Only this machine's own
// namespaces use it.
func netnsSubnet() (byte, byte) {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return 64 + b[0]%64, b[1]
}

// newNetns creates namespace i of a run (its /30 is 10.x.y.4i/30) and
// removes it at cleanup, after the processes in it (register it before
// starting them).
func newNetns(t testing.TB, tag string, x, y byte, i int) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the chaos suite cuts processes off in network namespaces: it must run as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("the chaos suite needs `ip` (iproute2: apt-get install -y iproute2)")
	}
	n := &netns{
		name:   fmt.Sprintf("pgrelay-%s-%d", tag, i),
		hostIf: fmt.Sprintf("pgrh%s%d", tag, i),
		nsIf:   fmt.Sprintf("pgrn%s%d", tag, i),
		hostIP: fmt.Sprintf("10.%d.%d.%d", x, y, 4*i+1),
		nsIP:   fmt.Sprintf("10.%d.%d.%d", x, y, 4*i+2),
	}
	t.Cleanup(func() { _ = ipCmd("netns", "del", n.name) })
	for _, args := range [][]string{
		{"netns", "add", n.name},
		{"link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf, "netns", n.name},
		{"addr", "add", n.hostIP + "/30", "dev", n.hostIf},
		{"link", "set", n.hostIf, "up"},
		{"-n", n.name, "addr", "add", n.nsIP + "/30", "dev", n.nsIf},
		{"-n", n.name, "link", "set", n.nsIf, "up"},
		{"-n", n.name, "link", "set", "lo", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatalf("setting up network namespace %s: %v", n.name, err)
		}
	}
	var err error
	if n.hostMAC, err = ifMAC("", n.hostIf); err != nil {
		t.Fatal(err)
	}
	if n.nsMAC, err = ifMAC(n.name, n.nsIf); err != nil {
		t.Fatal(err)
	}
	return n
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func ifMAC(ns, ifname string) (string, error) {
	args := []string{"-o", "link", "show", ifname}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	out, err := exec.Command("ip", args...).Output()
	if err != nil {
		return "", fmt.Errorf("ip %s: %v", strings.Join(args, " "), err)
	}
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "link/ether" && i+1 < len(f) {
			return f[i+1], nil
		}
	}
	return "", fmt.Errorf("no MAC address in %q", out)
}

// exec returns the argv that runs bin inside the namespace.
func (n *netns) exec(bin string) (string, []string) {
	return "ip", []string{"netns", "exec", n.name, bin}
}

// blackhole drops every frame between the namespace and the host, both ways.
func (n *netns) blackhole(t testing.TB) {
	t.Helper()
	for _, args := range [][]string{
		{"neigh", "replace", n.nsIP, "lladdr", "02:00:5e:00:00:01", "dev", n.hostIf, "nud", "permanent"},
		{"-n", n.name, "neigh", "replace", n.hostIP, "lladdr", "02:00:5e:00:00:02", "dev", n.nsIf, "nud", "permanent"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
}

// heal restores the path: the right neighbour entries, as ARP would find.
func (n *netns) heal(t testing.TB) {
	t.Helper()
	for _, args := range [][]string{
		{"neigh", "replace", n.nsIP, "lladdr", n.nsMAC, "dev", n.hostIf, "nud", "reachable"},
		{"-n", n.name, "neigh", "replace", n.hostIP, "lladdr", n.hostMAC, "dev", n.nsIf, "nud", "reachable"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
}

// tcpProxy forwards connections from a listen address to a target; cut
// makes the target unreachable through it (existing connections reset,
// new ones refused) until restore, and freeze black-holes it (no byte
// forwarded either way, every socket left open, new connections accepted
// and left silent) until thaw. Each relay and edge reaches Redis through
// one of its own, so that Redis can fail for one process alone.
//
// thaw resets the connections that were open across the black hole and
// drops the bytes they held, as a path that lost its packets would: it
// does not deliver them late. Late delivery (a middlebox that buffered the
// bytes, or the sender's kernel retransmitting the send queue of a socket
// that was closed during the outage) lets a publish the old leader gave up
// on reach Redis after the new leader's: docs/failover.md says why that is
// not covered yet and what would fence it.
type tcpProxy struct {
	addr, target string

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	frozen chan struct{} // closed by thaw; nil when not frozen
}

// freeze stops forwarding bytes, both ways, on every connection.
func (p *tcpProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen == nil {
		p.frozen = make(chan struct{})
	}
}

// thaw ends the black hole: connections open across it are reset, their
// held bytes dropped; new connections forward again.
func (p *tcpProxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen == nil {
		return
	}
	p.resetConns()
	close(p.frozen)
	p.frozen = nil
}

// resetConns closes every forwarded connection with RST; p.mu is held.
func (p *tcpProxy) resetConns() {
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST, not FIN
		}
		c.Close()
		delete(p.conns, c)
	}
}

// gate blocks while the proxy is frozen.
func (p *tcpProxy) gate() {
	p.mu.Lock()
	ch := p.frozen
	p.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func startProxy(t testing.TB, addr, target string) *tcpProxy {
	t.Helper()
	p := &tcpProxy{addr: addr, target: target, conns: map[net.Conn]bool{}}
	p.restore(t)
	t.Cleanup(p.cut)
	return p
}

// restore listens again.
func (p *tcpProxy) restore(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("proxy %s: %v", p.addr, err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String() // a port chosen on the first listen is kept
	p.mu.Unlock()
	go p.accept(ln)
}

func (p *tcpProxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *tcpProxy) forward(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // cut meanwhile
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[c], p.conns[u] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			p.gate() // frozen: hold what was read, read no more; thaw resets dst
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(u, c)
	go pipe(c, u)
	<-done
	c.Close()
	u.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

// cut stops listening and resets every forwarded connection.
func (p *tcpProxy) cut() {
	p.thaw()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	p.resetConns()
}
