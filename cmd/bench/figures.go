package main

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"time"
)

// tally adds up the readers' counts.
func (b *bench) tally(res *Result, sr sendResult, readers int, window time.Duration) {
	m := &res.Messages
	m.Sent = sr.Sent
	if sr.Err != nil {
		m.SendError = sr.Err.Error()
	}
	m.SendSeconds = sr.End.Sub(sr.Start).Seconds()
	m.SendRate = sr.Achieved
	m.SendMaxLateMS = ms(sr.MaxLate)
	m.NotifyExecMS = quantilesMS(sr.Exec)
	m.Expected = sr.Sent * uint64(readers)
	complete := 0
	for _, c := range b.clients {
		if c == nil || c.slow {
			continue
		}
		u := c.unique.Load()
		m.Delivered += u
		m.DeliveredFrames += c.frames
		m.Duplicates += c.duplicates
		m.OutOfOrder += c.outOfOrder
		m.Gaps += c.gaps
		m.Resets += c.resets
		m.Foreign += c.foreign
		m.Malformed += c.malformed
		if u == sr.Sent {
			complete++
		}
		if c.err != nil && !errors.Is(c.err, net.ErrClosed) {
			m.ReadersCut++
			key := c.err.Error()
			var ce *CloseError
			if errors.As(c.err, &ce) {
				key = fmt.Sprintf("close %d", ce.Code)
			}
			if m.ReadersCutWhy == nil {
				m.ReadersCutWhy = map[string]int{}
			}
			m.ReadersCutWhy[key]++
		}
	}
	m.ReadersComplete = complete
	m.Missing = m.Expected - m.Delivered
	if m.Expected > 0 {
		m.DeliveredRatio = float64(m.Delivered) / float64(m.Expected)
	}
	m.WindowSeconds = window.Seconds()
	if window > 0 {
		m.DeliveriesPerSecond = float64(m.Delivered) / window.Seconds()
	}
	res.Latency = latencyOf(b.lat.merged())
	res.Arrival = latencyOf(b.arrival.merged())
}

// serverFigures turns the edge samples (before connecting, connected,
// idle, window start, window end) into per-connection and per-delivery
// figures.
func (b *bench) serverFigures(res *Result, s []serverSample) {
	before, conn, idle, w0, w1 := s[0], s[1], s[2], s[3], s[4]
	e := &res.Edge
	for _, x := range s {
		e.Errors = append(e.Errors, x.Errs...)
	}
	e.Errors = dedupe(e.Errors)
	switch {
	case len(b.cfg.EdgePIDs) > 0:
		e.Source = "proc"
	case b.cfg.Metrics:
		e.Source = "metrics"
	default:
		e.Source = "none"
	}
	n := float64(res.Clients.Connected)
	if before.HaveRSS && conn.HaveRSS && idle.HaveRSS && w1.HaveRSS && n > 0 {
		e.RSSBefore, e.RSSConnected, e.RSSIdle, e.RSSEnd = before.RSS, conn.RSS, idle.RSS, w1.RSS
		e.RSSPerConnConnect = (conn.RSS - before.RSS) / n
		e.RSSPerConnIdle = (idle.RSS - before.RSS) / n
		e.RSSPerConnEnd = (w1.RSS - before.RSS) / n
	}
	if before.HaveMetrics && idle.HaveMetrics && n > 0 {
		e.HeapPerConnIdle = (idle.HeapInuse - before.HeapInuse) / n
		e.StackPerConnIdle = (idle.StackInuse - before.StackInuse) / n
		e.GoroutinesPerConn = (idle.Goroutines - before.Goroutines) / n
		e.ClientsGauge = conn.Clients
	}
	if w0.HaveCPU && w1.HaveCPU {
		e.CPUSeconds = w1.CPU - w0.CPU
		if ws := res.Messages.WindowSeconds; ws > 0 {
			e.CPUUtil = e.CPUSeconds / ws
		}
		deliveries, src := float64(res.Messages.DeliveredFrames), "clients"
		if w0.HaveMetrics && w1.HaveMetrics {
			deliveries, src = w1.Delivered-w0.Delivered, "metrics"
		}
		e.Deliveries, e.DeliveriesSource = deliveries, src
		if deliveries > 0 {
			e.CPUPerDeliveryUS = e.CPUSeconds / deliveries * 1e6
		}
	}
}

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}
