package test

import (
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
)

// TestLint is `helm lint --strict` for every scenario: errors and warnings fail.
func TestLint(t *testing.T) {
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			res := lint.AllWithKubeVersion(chartDir, sc.values, namespace, nil)
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
		})
	}
}

// TestTemplate is `helm template` for every scenario: it renders, the notes
// render, and every object lands in the release namespace.
func TestTemplate(t *testing.T) {
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			r := mustRender(t, sc.values)
			if len(r.objects) == 0 {
				t.Fatal("rendered no objects")
			}
			if !strings.Contains(r.notes, "Open the page") {
				t.Errorf("NOTES.txt did not render its instructions:\n%s", r.notes)
			}
			seen := map[string]bool{}
			for _, o := range r.objects {
				if o.meta.Metadata.Namespace != namespace {
					t.Errorf("%s: namespace %q, want the release namespace", o, o.meta.Metadata.Namespace)
				}
				key := o.meta.Kind + "/" + o.meta.Metadata.Name
				if seen[key] {
					t.Errorf("%s: rendered twice", key)
				}
				seen[key] = true
			}
		})
	}
}
