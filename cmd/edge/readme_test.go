package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"
	"github.com/pgrelay/pgrelay/internal/edge"
)

// The README's configuration table lists every variable with its default.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var cfg edge.Config
	var out bytes.Buffer
	format := "{{range .}}{{usage_key .}}\x1f{{usage_default .}}\x1f{{usage_required .}}\x1f{{usage_description .}}\n{{end}}"
	if err := envconfig.Usagef("EDGE", &cfg, &out, format); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		f := strings.Split(line, "\x1f")
		def := "`" + f[1] + "`"
		if f[1] == "" {
			def = "(none)"
			if f[2] == "true" {
				def = "(required)"
			}
		}
		row := "| `" + f[0] + "` | " + def + " | " + strings.ReplaceAll(f[3], "|", "\\|") + " |\n"
		if !strings.Contains(string(readme), row) {
			t.Errorf("README.md lacks the row, exactly as -h describes it:\n%s", row)
		}
	}
}
