package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart under test; repoRoot is pgrelay's module root.
const (
	chartDir = ".."
	repoRoot = "../../.."
)

// Release name and namespace used for every render.
const (
	releaseName = "pgrelay"
	namespace   = "pgrelay-test"
)

var chartOnce = sync.OnceValues(func() (*chart.Chart, error) { return loader.Load(chartDir) })

// loadChart loads the chart once per test binary (loading is read-only).
func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	ch, err := chartOnce()
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// scenario is one ci/*-values.yaml file: a set of values the chart must
// render, lint and wire up. ci/default-values.yaml is the defaults.
type scenario struct {
	name   string // the file name without -values.yaml
	file   string // path of the values file
	values map[string]any
}

// scenarios returns every ci/*-values.yaml file.
func scenarios(t testing.TB) []scenario {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("expected the ci/*-values.yaml scenarios, found %d", len(files))
	}
	sort.Strings(files)
	var out []scenario
	for _, f := range files {
		vals, err := chartutil.ReadValuesFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, scenario{
			name:   strings.TrimSuffix(filepath.Base(f), "-values.yaml"),
			file:   f,
			values: vals.AsMap(),
		})
	}
	if out[0].name != "default" && !hasScenario(out, "default") {
		t.Fatal("ci/default-values.yaml (the defaults) is missing")
	}
	return out
}

func hasScenario(s []scenario, name string) bool {
	for _, x := range s {
		if x.name == name {
			return true
		}
	}
	return false
}

// object is one rendered Kubernetes object.
type object struct {
	source string // template that produced it, e.g. "pgrelay/templates/edge-deployment.yaml"
	raw    []byte // its YAML
	meta   struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name        string            `json:"name"`
			Namespace   string            `json:"namespace"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
}

func (o object) String() string {
	return fmt.Sprintf("%s %s (%s)", o.meta.Kind, o.meta.Metadata.Name, o.source)
}

// rendering is the result of `helm template` for one set of values.
type rendering struct {
	objects []object
	notes   string
	values  chartutil.Values // the coalesced values the templates saw
}

// render renders the chart as `helm template` would, with values merged
// over the chart's defaults and checked against values.schema.json.
func render(t testing.TB, values map[string]any) (*rendering, error) {
	t.Helper()
	ch := loadChart(t)
	// As `helm template` does. A helm built with `go install` (the way to get it
	// from the Go module proxy) assumes Kubernetes v1.20 unless told otherwise.
	if kv := ch.Metadata.KubeVersion; kv != "" && !chartutil.IsCompatibleRange(kv, chartutil.DefaultCapabilities.KubeVersion.String()) {
		return nil, fmt.Errorf("chart requires kubeVersion %s, which is incompatible with Kubernetes %s", kv, chartutil.DefaultCapabilities.KubeVersion)
	}
	opts := chartutil.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	vals, err := chartutil.ToRenderValues(ch, values, opts, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	r := &rendering{values: vals}
	if v, err := vals.Table("Values"); err == nil {
		r.values = v
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		text := files[name]
		switch {
		case strings.HasSuffix(name, "NOTES.txt"):
			r.notes = text
			continue
		case !strings.HasSuffix(name, ".yaml"):
			continue
		}
		docs := releaseutil.SplitManifests(text)
		keys := make([]string, 0, len(docs))
		for k := range docs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			doc := docs[k]
			var probe any
			if err := yaml.Unmarshal([]byte(doc), &probe); err != nil {
				return nil, fmt.Errorf("%s: not YAML: %v\n%s", name, err, doc)
			}
			if probe == nil {
				continue // only comments or whitespace
			}
			o := object{source: name, raw: []byte(doc)}
			if err := yaml.Unmarshal(o.raw, &o.meta); err != nil {
				return nil, fmt.Errorf("%s: %v", name, err)
			}
			r.objects = append(r.objects, o)
		}
	}
	return r, nil
}

// mustRender is render that fails the test on an error.
func mustRender(t testing.TB, values map[string]any) *rendering {
	t.Helper()
	r, err := render(t, values)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return r
}

// find returns the rendered objects of a kind.
func (r *rendering) find(kind string) []object {
	var out []object
	for _, o := range r.objects {
		if o.meta.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// component returns the one object of a kind whose component label is c.
func (r *rendering) component(t testing.TB, kind, c string) object {
	t.Helper()
	var out []object
	for _, o := range r.find(kind) {
		if o.meta.Metadata.Labels["app.kubernetes.io/component"] == c && o.meta.Metadata.Labels["pgrelay.io/service"] == "" {
			out = append(out, o)
		}
	}
	if len(out) != 1 {
		t.Fatalf("want one %s with component %q, got %d", kind, c, len(out))
	}
	return out[0]
}

// decodeInto decodes an object's YAML strictly into a typed value.
func decodeInto(t testing.TB, o object, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(o.raw, into); err != nil {
		t.Fatalf("%s: %v", o, err)
	}
}

// merge returns a deep copy of base with over merged in (maps merge, other
// values replace), like helm's -f then --set.
func merge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = merge(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// setPath builds a nested map from a dotted path, for overrides like --set.
func setPath(path string, v any) map[string]any {
	parts := strings.Split(path, ".")
	m := map[string]any{parts[len(parts)-1]: v}
	for i := len(parts) - 2; i >= 0; i-- {
		m = map[string]any{parts[i]: m}
	}
	return m
}

// dump is the whole rendering, for failure messages.
func (r *rendering) dump() string {
	var b bytes.Buffer
	for _, o := range r.objects {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", o.source, o.raw)
	}
	return b.String()
}

// getenv returns the variable's value, or def when unset or empty.
func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
