package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

var (
	metricName = regexp.MustCompile(`pgrelay_[a-z_]+`)
	byLabels   = regexp.MustCompile(`by \(([a-z_, ]+)\)`)
)

// scrapeLabels are added by Prometheus or by histograms, not by us.
var scrapeLabels = map[string]bool{"le": true, "instance": true, "job": true}

// TestDashboard: the Grafana dashboard in the chart's folder is valid JSON
// whose every query names metrics the binaries export, grouped only by
// labels those metrics have.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile("../../charts/pgrelay/dashboards/pgrelay.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	// A query names a series: a family, or a histogram's _bucket, _sum or
	// _count series of one.
	family := map[string]string{}          // series → its family
	labels := map[string]map[string]bool{} // family → its labels
	for _, f := range gatherAll(t) {
		name, names := f.GetName(), map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				names[l.GetName()] = true
			}
		}
		labels[name], family[name] = names, name
		if f.GetType().String() == "HISTOGRAM" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				family[name+suffix] = name
			}
		}
	}
	ids, queries, seen := map[int]bool{}, 0, map[string]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		for _, tg := range p.Targets {
			queries++
			used := metricName.FindAllString(tg.Expr, -1)
			if len(used) == 0 {
				t.Errorf("panel %q: query %q names no pgrelay metric", p.Title, tg.Expr)
			}
			for _, name := range used {
				fam, ok := family[name]
				if !ok {
					t.Errorf("panel %q: %s is not a metric the binaries export", p.Title, name)
					continue
				}
				seen[fam] = true
				have := labels[fam]
				for _, m := range byLabels.FindAllStringSubmatch(tg.Expr, -1) {
					for _, l := range strings.Split(m[1], ",") {
						if l = strings.TrimSpace(l); !scrapeLabels[l] && !have[l] {
							t.Errorf("panel %q: %s has no label %q", p.Title, name, l)
						}
					}
				}
			}
		}
	}
	if dash.UID == "" || queries < 20 {
		t.Errorf("uid %q, %d queries: not the dashboard expected", dash.UID, queries)
	}
	// Everything an operator watches has a panel: each family but the
	// per-channel gauge (opt-in labels) and the incomplete-request count.
	for name := range labels {
		if !strings.HasPrefix(name, "pgrelay_") || seen[name] {
			continue
		}
		switch name {
		case "pgrelay_edge_channel_subscribers", "pgrelay_edge_incomplete_requests_total", "pgrelay_edge_connections_total":
			continue
		}
		t.Errorf("no panel shows %s", name)
	}
}
