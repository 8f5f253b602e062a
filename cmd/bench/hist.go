package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// hist is a log-linear histogram of durations (nanoseconds), safe for
// concurrent Record: 128 buckets per power of two above 256 ns, so a
// percentile is within 0.4% of the true value (each bucket reports its
// middle). Fixed size, no allocation per sample, exact count, sum and max.
type hist struct {
	buckets [histBuckets]atomic.Uint64
	count   atomic.Uint64
	sum     atomic.Uint64
	max     atomic.Uint64
}

const (
	histSubBits = 8
	histSub     = 1 << histSubBits // values below are exact
	histHalf    = histSub / 2
	histBuckets = (64-histSubBits+2)*histHalf + 1
)

// bucketOf returns v's bucket. Below histSub each value has its own; above,
// v's top histSubBits bits pick one of histHalf buckets per power of two.
func bucketOf(v uint64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits
	return shift*histHalf + int(v>>shift)
}

// bucketRange returns the smallest value of bucket i and its width.
func bucketRange(i int) (lo, width uint64) {
	if i < histSub {
		return uint64(i), 1
	}
	shift := i/histHalf - 1
	m := uint64(i - shift*histHalf)
	return m << shift, 1 << shift
}

func (h *hist) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.buckets[bucketOf(v)].Add(1)
	h.count.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// merge adds o's samples to h.
func (h *hist) merge(o *hist) {
	for i := range o.buckets {
		if n := o.buckets[i].Load(); n > 0 {
			h.buckets[i].Add(n)
		}
	}
	h.count.Add(o.count.Load())
	h.sum.Add(o.sum.Load())
	if m := o.max.Load(); m > h.max.Load() {
		h.max.Store(m)
	}
}

// Quantile returns the q-quantile (0 < q ≤ 1) as its bucket's middle, at
// most the maximum; 0 when empty.
func (h *hist) Quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	// The rank of the sample that is the q-quantile, counting from 1.
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	if rank == n {
		return time.Duration(h.max.Load())
	}
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= rank {
			lo, w := bucketRange(i)
			return time.Duration(min(lo+w/2, h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

func (h *hist) Count() uint64      { return h.count.Load() }
func (h *hist) Max() time.Duration { return time.Duration(h.max.Load()) }

func (h *hist) Mean() time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// shardedHist spreads Record over several hists, so that readers on
// different cores seldom share a cache line.
type shardedHist struct {
	shards []hist
}

func newShardedHist(n int) *shardedHist { return &shardedHist{shards: make([]hist, n)} }

func (s *shardedHist) shard(i int) *hist { return &s.shards[i%len(s.shards)] }

// merged returns the sum of the shards.
func (s *shardedHist) merged() *hist {
	var h hist
	for i := range s.shards {
		h.merge(&s.shards[i])
	}
	return &h
}
