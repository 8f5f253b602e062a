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
	format := "{{range .}}{{usage_key .}}|{{usage_default .}}\n{{end}}"
	if err := envconfig.Usagef("EDGE", &cfg, &out, format); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		key, def, _ := strings.Cut(line, "|")
		row := "| `" + key + "` | "
		if def != "" {
			row += "`" + def + "` |"
		}
		if !strings.Contains(string(readme), row) {
			t.Errorf("README.md has no row starting %q", row)
		}
	}
}
