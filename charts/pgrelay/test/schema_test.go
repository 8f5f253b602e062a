package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
)

// TestSchemaRejectsBadValues: values.schema.json refuses wrong types, unknown
// keys and malformed settings before anything renders, with a message that
// names the value.
func TestSchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		path string
		v    any
	}{
		{"edge.replicas", "three"},
		{"relay.replicas", -1},
		{"edge.replica", 3}, // a typo: unknown keys are refused
		{"relay.config.logLevel", "verbose"},
		{"edge.config.drainTimeout", "10 seconds"},
		{"relay.config.channels", []any{}},
		{"relay.config.channels", []any{"a,b"}},
		{"relay.config.lockKey", 42}, // a string, so that 64-bit keys survive
		{"edge.config.maxChannels", 0},
		{"edge.service.type", "Ingress"},
		{"edge.ingress.hosts", []any{map[string]any{"host": "x", "paths": []any{map[string]any{"path": "live"}}}}},
		{"edge.image.digest", "latest"},
		{"demoPostgres.password", "p@ss word"},
		{"redis.enabled", "yes"},
		{"edge.auth.mode", "oauth"},
		{"edge.auth.jwt.algorithms", []any{"none"}},
		{"relay.config.source", "wal"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, setPath(tc.path, tc.v))
			if err == nil {
				t.Fatalf("%s=%#v rendered; the schema should refuse it", tc.path, tc.v)
			}
			t.Logf("refused: %v", err)
			leaf := tc.path[strings.LastIndex(tc.path, ".")+1:]
			if !strings.Contains(err.Error(), leaf) {
				t.Errorf("the error does not name %s:\n%v", leaf, err)
			}
		})
	}
}

// TestRenderRefusesBadCombinations: what the schema cannot express, the
// templates refuse with a message that names the values to change.
func TestRenderRefusesBadCombinations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"grace shorter than drain", merge(setPath("edge.config.drainTimeout", "30s"), setPath("edge.terminationGracePeriodSeconds", 31)), "edge.terminationGracePeriodSeconds"},
		{"grace shorter than drain in minutes", setPath("edge.config.drainTimeout", "1m"), "edge.terminationGracePeriodSeconds"},
		{"demo database with existingSecret", merge(setPath("demoPostgres.enabled", true), setPath("existingSecret.name", "x")), "demoPostgres.enabled"},
		{"no Redis at all", setPath("redis.enabled", false), "externalRedis.url"},
		{"jwt without keys", setPath("edge.auth.mode", "jwt"), "edge.auth.jwt.secret"},
		{"HPA min over max", setPath("edge.autoscaling", map[string]any{"enabled": true, "minReplicas": 5, "maxReplicas": 2}), "minReplicas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := render(t, tc.values)
			if err == nil {
				t.Fatalf("rendered; want an error naming %s", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not name %s: %v", tc.want, err)
			}
		})
	}
}

// TestValuesDocumented: every value has a helm-docs `# --` comment, so the
// generated README documents it. A map with its own comment is documented as
// a whole.
func TestValuesDocumented(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(n *yamlv3.Node, path string)
	walk = func(n *yamlv3.Node, path string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := strings.TrimPrefix(path+"."+k.Value, ".")
			documented := strings.Contains(k.HeadComment, "# --")
			if v.Kind == yamlv3.MappingNode && len(v.Content) > 0 && !documented {
				walk(v, p)
				continue
			}
			if !documented {
				t.Errorf("values.yaml: %s (line %d) has no `# --` comment", p, k.Line)
			}
		}
	}
	walk(doc.Content[0], "")
}
