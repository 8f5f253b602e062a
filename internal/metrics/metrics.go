// Package metrics exports pgrelay's Prometheus metrics. It is the only
// package that imports client_golang: the others keep plain counters or call
// an observer, and this package turns them into collectors on a registry of
// the caller's (tests use a fresh one each).
//
// Every metric is documented in docs/metrics.md; a test keeps the two in step.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg at /metrics.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// latencyBuckets span 100 µs to ~6.5 s: the floor of a LISTEN round trip to
// a client stuck behind a slow network.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 17)

// counterFunc registers a counter read from f.
func counterFunc(reg prometheus.Registerer, name, help string, f func() uint64) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
		func() float64 { return float64(f()) }))
}

// gaugeFunc registers a gauge read from f.
func gaugeFunc(reg prometheus.Registerer, name, help string, f func() float64) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
