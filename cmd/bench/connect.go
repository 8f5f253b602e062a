package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// wsURL is an edge's /ws URL for the channel.
func (b *bench) wsURL(base *url.URL) *url.URL {
	u := *base
	u.RawQuery = url.Values{"channel": {b.cfg.Channel}}.Encode()
	return &u
}

// dialOptions are client i's: its source address, and a small receive
// buffer if it is slow.
func (b *bench) dialOptions(i int, slow bool) dialOptions {
	d := &net.Dialer{Timeout: 10 * time.Second}
	var controls []func(network, address string, c syscall.RawConn) error
	if b.cfg.Sources > 0 {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%b.cfg.Sources))}
		controls = append(controls, sourceControl)
	}
	if slow {
		controls = append(controls, smallRcvBuf)
	}
	if len(controls) > 0 {
		d.Control = func(network, address string, c syscall.RawConn) error {
			for _, f := range controls {
				if err := f(network, address, c); err != nil {
					return err
				}
			}
			return nil
		}
	}
	o := dialOptions{Dialer: d}
	if b.cfg.Token != "" {
		o.Header = http.Header{"Authorization": {"Bearer " + b.cfg.Token}}
	}
	return o
}

// isSlow spreads the slow clients evenly: client i is slow when the
// running share of slow clients first reaches a new whole number.
func isSlow(i int, fraction float64) bool {
	return int(float64(i+1)*fraction) > int(float64(i)*fraction)
}

// connectAll opens the clients at the ramp rate, 64 handshakes at most in
// flight, and starts each reader as soon as it is connected.
func (b *bench) connectAll(ctx context.Context) {
	cfg := b.cfg
	b.clients = make([]*client, cfg.Clients)
	if r, err := newReactors(runtime.GOMAXPROCS(0), cfg.Clients, !cfg.QuickACK); err == nil {
		b.reactors = r
	} else if r != nil || err != errNoReactor {
		b.logf("epoll: %v; reading with a goroutine per connection", err)
	}
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := time.Now()
	for i := range cfg.Clients {
		if ctx.Err() != nil {
			break
		}
		if cfg.Ramp > 0 {
			due := start.Add(time.Duration(float64(i) / cfg.Ramp * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				sleepCtx(ctx, d)
			}
		}
		sem <- struct{}{}
		slow := isSlow(i, cfg.SlowFraction)
		wg.Go(func() {
			defer func() { <-sem }()
			c := newClient(i, slow, cfg.Count, b.run, b.lat.shard(i), b.arrival.shard(i))
			dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			t := time.Now()
			conn, err := dialWS(dctx, b.wsURL(cfg.Edges[i%len(cfg.Edges)]), b.dialOptions(i, slow))
			if err != nil {
				mu.Lock()
				b.dialErr[dialErrorKey(err)]++
				mu.Unlock()
				return
			}
			b.connect.Record(time.Since(t))
			c.conn = conn
			b.clients[i] = c
			if slow {
				return
			}
			if b.reactors != nil {
				attached, err := b.reactors.attach(c)
				if err != nil {
					mu.Lock()
					b.dialErr["attach: "+err.Error()]++
					b.clients[i] = nil
					mu.Unlock()
					conn.Close()
					return
				}
				if attached {
					return
				}
			}
			b.readers.Go(c.read)
		})
		if i > 0 && i%5000 == 0 {
			b.logf("%d connections opened", i)
		}
	}
	wg.Wait()
}

// dialErrorKey groups dial errors: the same cause on thousands of
// connections reads as one line with a count.
func dialErrorKey(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Op + ": " + op.Err.Error()
	}
	return err.Error()
}

// count returns how many readers and slow clients are connected, and how
// many of the readers an epoll set reads: only those delay their ACKs
// (delayACK); the others read through a goroutine.
func (b *bench) count() (readers, slow, epoll int) {
	for _, c := range b.clients {
		switch {
		case c == nil:
		case c.slow:
			slow++
		default:
			readers++
			if c.p != nil {
				epoll++
			}
		}
	}
	return readers, slow, epoll
}
