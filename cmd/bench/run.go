package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"
)

// env is what a run talks to besides the edges: swapped in tests.
type env struct {
	// dialNotifier opens one sending connection.
	dialNotifier func(ctx context.Context) (notifier, error)
	// progress receives a line now and then; nil for none.
	progress io.Writer
}

// bench is one run's state.
type bench struct {
	cfg     Config
	env     env
	run     string       // tag of this run's payloads
	lat     *shardedHist // read time − SENT
	arrival *shardedHist // kernel receive stamp − SENT (reactor reads)
	probe   *serverProbe

	clients  []*client // connected ones; nil where the dial failed
	reactors *reactors // nil: each reader has its goroutine
	readers  sync.WaitGroup
	dialErr  map[string]int
	connect  hist

	listeners []*arrivals // -pg-listen and -redis, those given
}

// Run carries out one benchmark and returns its results.
func Run(ctx context.Context, cfg Config, e env) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &bench{
		cfg:     cfg,
		env:     e,
		run:     randomHex(4),
		lat:     newShardedHist(16),
		arrival: newShardedHist(16),
		dialErr: map[string]int{},
		probe:   &serverProbe{pids: cfg.EdgePIDs, http: &http.Client{}},
	}
	if cfg.Metrics {
		for _, u := range cfg.Edges {
			b.probe.metrics = append(b.probe.metrics, metricsURL(u))
		}
	}
	return b.do(ctx)
}

func (b *bench) logf(format string, args ...any) {
	if b.env.progress != nil {
		fmt.Fprintf(b.env.progress, "bench: "+format+"\n", args...)
	}
}

func (b *bench) do(ctx context.Context) (*Result, error) {
	cfg := b.cfg
	res := &Result{Machine: machine{CPUs: runtime.NumCPU(), CPUModel: cpuModel(), Kernel: kernel(), LoadAvg1: loadAvg()}}
	res.Config = configOf(cfg)
	defer func() { res.Machine.LoadEnd = loadAvg() }()

	// Senders first: a wrong -db fails before any connection is opened.
	senders := cfg.Senders
	if senders == 0 {
		senders = min(16, int(cfg.Rate/1000)+1)
	}
	res.Config.Senders = senders
	ns := make([]notifier, 0, senders)
	defer func() {
		for _, n := range ns {
			n.Close()
		}
	}()
	for range senders {
		n, err := b.env.dialNotifier(ctx)
		if err != nil {
			return nil, fmt.Errorf("-db: connect: %w", err)
		}
		ns = append(ns, n)
	}

	var (
		pgl     *pgListener
		stopPGL = func() {}
		rl      *redisListener
		stopRL  = func() {}
	)
	if cfg.PGListen {
		var err error
		if pgl, err = listenPG(ctx, cfg.DatabaseURL, cfg.Channel, newArrivals(b.run, cfg.Count)); err != nil {
			return nil, fmt.Errorf("-pg-listen: %w", err)
		}
		stopPGL = startListener(ctx, pgl)
		defer stopPGL()
		b.listeners = append(b.listeners, pgl.arrivals)
	}
	if cfg.RedisURL != "" {
		var err error
		if rl, err = listenRedis(ctx, cfg.RedisURL, redisChannel(cfg.RedisPrefix, cfg.Channel), newArrivals(b.run, cfg.Count)); err != nil {
			return nil, fmt.Errorf("-redis: %w", err)
		}
		stopRL = startListener(ctx, rl)
		defer stopRL()
		b.listeners = append(b.listeners, rl.arrivals)
	}

	if err := b.checkPath(ctx, ns[0]); err != nil {
		return nil, err
	}
	if rl != nil {
		if err := checkRedis(ctx, rl, redisChannel(cfg.RedisPrefix, cfg.Channel)); err != nil {
			return nil, err
		}
	}

	s0 := b.probe.sample(ctx)
	b.logf("opening %d connections to %d edge(s)", cfg.Clients, len(cfg.Edges))
	t0 := time.Now()
	b.connectAll(ctx)
	res.Clients.ConnectSeconds = time.Since(t0).Seconds()
	defer b.closeAll()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	readers, slow, epoll := b.count()
	res.Clients.Requested, res.Clients.Connected = cfg.Clients, readers+slow
	res.Clients.Readers, res.Clients.Slow, res.Clients.EpollReaders = readers, slow, epoll
	res.Clients.Failed = cfg.Clients - readers - slow
	res.Clients.Errors = b.dialErr
	res.Clients.ConnectMS = quantilesMS(&b.connect)
	b.logf("connected %d of %d in %.1fs", readers+slow, cfg.Clients, res.Clients.ConnectSeconds)
	if readers == 0 {
		return res, fmt.Errorf("no reading client connected; first errors: %v", b.dialErr)
	}
	s1 := b.probe.sample(ctx)

	sleepCtx(ctx, cfg.Settle)
	s2 := b.probe.sample(ctx)

	// Every reader sees a warm-up message before the window opens: all
	// are subscribed end to end, and each knows the channel's last id.
	synced := b.sync(ctx, ns[0], 1, 10*time.Second+time.Duration(readers)*time.Millisecond)
	if synced < readers {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d of %d readers did not receive the warm-up notification", readers-synced, readers))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	s3 := b.probe.sample(ctx)
	stopProfile, err := startProfile(cfg.CPUProfile)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	cpu3 := ownCPU()
	b.logf("sending %d notifications at %g/s (%d sender(s))", cfg.Count, cfg.Rate, senders)
	sr := send(ctx, ns, sendPlan{Channel: cfg.Channel, Run: b.run, Count: cfg.Count, Rate: cfg.Rate, Size: cfg.Payload})
	if sr.Err != nil {
		res.Warnings = append(res.Warnings, "sending stopped: "+sr.Err.Error())
	}
	end := b.waitDelivered(ctx, sr.Sent, readers)
	cpu4 := ownCPU()
	stopProfile()
	s4 := b.probe.sample(ctx)
	window := end.Sub(sr.Start)

	if slow > 0 {
		res.Slow = b.drainSlow()
	}
	b.stopReading()
	b.tally(res, sr, readers, window)
	if pgl != nil {
		stopPGL()
		res.PGListen = pgl.figures(sr.Sent)
	}
	if rl != nil {
		stopRL()
		res.Redis = rl.figures(sr.Sent)
		if rl.err != nil {
			res.Warnings = append(res.Warnings, "-redis: receiving stopped: "+rl.err.Error())
		}
		if rl.malformed > 0 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("-redis: %d messages on the channel were not envelopes", rl.malformed))
		}
	}
	if p, r := res.PGListen, res.Redis; p != nil && r != nil && p.Latency.Samples > 0 && r.Latency.Samples > 0 {
		res.RelayAdds = &relayAddsJSON{P50: r.Latency.P50 - p.Latency.P50, P99: r.Latency.P99 - p.Latency.P99}
	}
	b.serverFigures(res, []serverSample{s0, s1, s2, s3, s4})
	if s3.HaveMetrics && s4.HaveMetrics {
		res.Edge.SlowKicked = s4.SlowKicked - s3.SlowKicked
		if res.Slow != nil {
			res.Slow.EdgeSlowKicked = res.Edge.SlowKicked
		}
	}
	own := (cpu4 - cpu3).Seconds()
	res.Bench = benchJSON{CPUSeconds: own, CPUUtil: own / window.Seconds()}
	if d := res.Messages.DeliveredFrames; d > 0 {
		res.Bench.CPUPerDeliveryUS = own / float64(d) * 1e6
	}
	return res, nil
}

// checkPath sends a warm-up notification through one client per edge and
// fails if it does not arrive: no relay, the wrong channel or prefix.
func (b *bench) checkPath(ctx context.Context, n notifier) error {
	var probes []*client
	defer func() {
		for _, c := range probes {
			c.conn.Close()
		}
	}()
	for i, u := range b.cfg.Edges {
		c := newClient(-1, false, 0, b.run, &hist{}, &hist{})
		conn, err := dialWS(ctx, b.wsURL(u), b.dialOptions(i, false))
		if err != nil {
			return fmt.Errorf("-edges: %s: %w", u.Redacted(), err)
		}
		c.conn = conn
		go c.read()
		probes = append(probes, c)
	}
	var pending []string
	buf := appendPayload(nil, b.run, "w0", time.Now().UnixNano(), b.cfg.Payload)
	if err := n.Notify(ctx, b.cfg.Channel, string(buf)); err != nil {
		return fmt.Errorf("-db: pg_notify: %w", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pending = pending[:0]
		for i, c := range probes {
			if c.warm.Load() < 0 {
				pending = append(pending, b.cfg.Edges[i].Redacted())
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("a notification on channel %q did not reach %v within 5s: is a relay leading, listening on it (RELAY_CHANNELS) and sharing the edges' prefix (RELAY_PREFIX, EDGE_PREFIX)?", b.cfg.Channel, pending)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkRedis waits for checkPath's warm-up notification on the relay's
// Redis channel, and fails if it does not arrive: the wrong prefix. The
// edges have it already, so the relay has published it.
func checkRedis(ctx context.Context, rl *redisListener, channel string) error {
	deadline := time.Now().Add(2 * time.Second)
	for rl.warm.Load() < 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("-redis-prefix: the edges received a notification that did not arrive on Redis channel %q within 2s: is the prefix the relay's RELAY_PREFIX, and -redis its Redis?", channel)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// sync sends warm-up notification w and waits until every reader has it,
// or for limit; it returns how many have.
func (b *bench) sync(ctx context.Context, n notifier, w int, limit time.Duration) int {
	buf := appendPayload(nil, b.run, fmt.Sprintf("w%d", w), time.Now().UnixNano(), b.cfg.Payload)
	if err := n.Notify(ctx, b.cfg.Channel, string(buf)); err != nil {
		b.logf("warm-up notification: %v", err)
		return 0
	}
	deadline := time.Now().Add(limit)
	for {
		got := 0
		for _, c := range b.clients {
			if c != nil && !c.slow && c.warm.Load() >= int64(w) {
				got++
			}
		}
		readers, _, _ := b.count()
		if got == readers || time.Now().After(deadline) || ctx.Err() != nil {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitDelivered waits until every reader has every notification sent, or
// until -wait has passed since sending ended, and returns when it stopped.
// Then it waits, until the same deadline, for the listeners to have every
// notification too; that wait is not part of the window it returns.
func (b *bench) waitDelivered(ctx context.Context, sent uint64, readers int) time.Time {
	want := sent * uint64(readers)
	deadline := time.Now().Add(b.cfg.Wait)
	var end time.Time
	for {
		now := time.Now()
		over := now.After(deadline) || ctx.Err() != nil
		if end.IsZero() {
			var got uint64
			for _, c := range b.clients {
				if c != nil && !c.slow {
					got += c.unique.Load()
				}
			}
			if got >= want || over {
				if got < want {
					b.logf("%d of %d deliveries after waiting %s", got, want, b.cfg.Wait)
				}
				end = now
			}
		}
		if !end.IsZero() {
			short := 0
			for _, a := range b.listeners {
				if a.unique.Load() < sent {
					short++
				}
			}
			if short == 0 || over {
				if short > 0 {
					b.logf("%d listener(s) short of the %d notifications after waiting %s", short, sent, b.cfg.Wait)
				}
				return end
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// drainSlow reads what the slow clients have waiting and counts those the
// edge cut off.
func (b *bench) drainSlow() *slowJSON {
	out := &slowJSON{}
	deadline := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range b.clients {
		if c == nil || !c.slow {
			continue
		}
		out.Clients++
		wg.Go(func() {
			cut := c.drain(deadline)
			mu.Lock()
			defer mu.Unlock()
			out.Frames += c.frames
			if cut {
				out.CutOff++
				var ce *CloseError
				if errors.As(c.err, &ce) {
					if out.CloseCodes == nil {
						out.CloseCodes = map[string]int{}
					}
					out.CloseCodes[fmt.Sprint(ce.Code)]++
				}
			} else {
				out.StillConnected++
			}
		})
	}
	wg.Wait()
	return out
}

// stopReading stops the readers, so that their counts can be read.
func (b *bench) stopReading() {
	if b.reactors != nil {
		b.reactors.close()
		b.reactors = nil
	}
	for _, c := range b.clients {
		if c != nil && !c.slow {
			c.conn.Close() // ends a reader goroutine (TLS, or no epoll)
		}
	}
	b.readers.Wait()
}

// closeAll closes every connection and waits for the readers.
func (b *bench) closeAll() {
	b.stopReading()
	for _, c := range b.clients {
		if c != nil {
			c.conn.Close()
		}
	}
	b.readers.Wait()
}

// startProfile starts a CPU profile into path, if set; the func stops it.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
