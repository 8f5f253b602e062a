package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// serverSample is the edges' state at one moment, summed over the edges.
// RSS and CPU come from /proc/PID when -edge-pid names the processes, else
// from each edge's /metrics (the Prometheus process collector).
type serverSample struct {
	At      time.Time
	HaveRSS bool
	RSS     float64 // bytes
	HaveCPU bool
	CPU     float64 // seconds, user + system

	HaveMetrics bool
	Delivered   float64 // pgrelay_edge_messages_delivered_total
	SlowKicked  float64 // pgrelay_edge_slow_clients_total
	Clients     float64 // pgrelay_edge_clients
	HeapInuse   float64 // go_memstats_heap_inuse_bytes
	StackInuse  float64 // go_memstats_stack_inuse_bytes
	Goroutines  float64 // go_goroutines

	Errs []string
}

// serverProbe samples the edges.
type serverProbe struct {
	pids    []int
	metrics []string // /metrics URLs; empty with -metrics=false
	http    *http.Client
}

func (p *serverProbe) enabled() bool { return len(p.pids) > 0 || len(p.metrics) > 0 }

func (p *serverProbe) sample(ctx context.Context) serverSample {
	s := serverSample{At: time.Now()}
	if len(p.pids) > 0 {
		s.HaveRSS, s.HaveCPU = true, true
		for _, pid := range p.pids {
			rss, cpu, err := readProc(pid)
			if err != nil {
				s.HaveRSS, s.HaveCPU = false, false
				s.Errs = append(s.Errs, err.Error())
				continue
			}
			s.RSS += rss
			s.CPU += cpu
		}
	}
	if len(p.metrics) > 0 {
		s.HaveMetrics = true
		fromMetrics := len(p.pids) == 0
		if fromMetrics {
			s.HaveRSS, s.HaveCPU = true, true
		}
		for _, u := range p.metrics {
			m, err := p.scrape(ctx, u)
			if err != nil {
				s.HaveMetrics = false
				if fromMetrics {
					s.HaveRSS, s.HaveCPU = false, false
				}
				s.Errs = append(s.Errs, err.Error())
				continue
			}
			if fromMetrics {
				s.RSS += m["process_resident_memory_bytes"]
				s.CPU += m["process_cpu_seconds_total"]
			}
			s.Delivered += m["pgrelay_edge_messages_delivered_total"]
			s.SlowKicked += m["pgrelay_edge_slow_clients_total"]
			s.Clients += m["pgrelay_edge_clients"]
			s.HeapInuse += m["go_memstats_heap_inuse_bytes"]
			s.StackInuse += m["go_memstats_stack_inuse_bytes"]
			s.Goroutines += m["go_goroutines"]
		}
	}
	return s
}

// readProc returns a process's resident memory (bytes) and CPU time
// (seconds, user + system) from /proc.
func readProc(pid int) (rss, cpu float64, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("-edge-pid %d: %w", pid, err)
	}
	found := false
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseFloat(f[0], 64)
				if err == nil {
					rss, found = kb*1024, true
				}
			}
		}
	}
	if !found {
		return 0, 0, fmt.Errorf("-edge-pid %d: no VmRSS in /proc/%d/status", pid, pid)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("-edge-pid %d: %w", pid, err)
	}
	cpu, err = parseStatCPU(string(stat))
	if err != nil {
		return 0, 0, fmt.Errorf("-edge-pid %d: %w", pid, err)
	}
	return rss, cpu, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// parseStatCPU returns utime + stime (fields 14 and 15) of a
// /proc/PID/stat line in seconds. The command name, in parentheses, may
// hold spaces, so fields are counted after its closing parenthesis.
func parseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat line")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat line")
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed stat line")
	}
	return float64(utime+stime) / clockTicks, nil
}

// scrape reads the unlabelled samples of a Prometheus text exposition, and
// sums labelled ones under their name.
func (p *serverProbe) scrape(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s answered %s", url, resp.Status)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (map[string]float64, error) {
	m := make(map[string]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(rest) // value [timestamp]
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		m[name] += v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return m, nil
}

// machine describes the host the benchmark runs on.
type machine struct {
	CPUs     int     `json:"cpus"`
	CPUModel string  `json:"cpu_model"`
	Kernel   string  `json:"kernel"`
	LoadAvg1 float64 `json:"load_avg_1m_at_start"`
	LoadEnd  float64 `json:"load_avg_1m_at_end"`
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// loadAvg returns the 1-minute load average, or -1.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
