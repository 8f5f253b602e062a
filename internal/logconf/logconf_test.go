package logconf

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestNew: the format and the level are those asked for; bad ones are
// refused with what was wrong.
func TestNew(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	if line["msg"] != "shown" || line["level"] != "WARN" || line["k"] != float64(1) {
		t.Errorf("line %v", line)
	}
	buf.Reset()
	log, _ = New(&buf, "text", "debug")
	log.Debug("d")
	if !strings.Contains(buf.String(), "level=DEBUG msg=d") {
		t.Errorf("text line %q", buf.String())
	}
	if _, err := New(&buf, "xml", "info"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("format xml: %v", err)
	}
	if _, err := New(&buf, "json", "loud"); err == nil || !strings.Contains(err.Error(), `"loud"`) {
		t.Errorf("level loud: %v", err)
	}
}

// logCall finds a log line in the code: the level method and a literal
// message.
var logCall = regexp.MustCompile(`\.(Debug|Info|Warn|Error)\("((?:[^"\\]|\\.)*)"`)

// docRow finds a row of the Logs tables: | level | `msg` | ...
var docRow = regexp.MustCompile("(?m)^\\| (debug|info|warn|error) \\| `([^`]+)` \\|")

// TestEveryLogLineIsDocumented: each message the binaries log (a literal
// passed to a slog level method in cmd/ or internal/) has a row, at its
// level, in docs/metrics.md's Logs section, and each row there is a line
// the code still logs.
func TestEveryLogLineIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	_, logs, ok := strings.Cut(string(doc), "\n## Logs\n")
	if !ok {
		t.Fatal("docs/metrics.md has no \"## Logs\" section")
	}
	documented := map[string]map[string]bool{} // msg → levels
	for _, m := range docRow.FindAllStringSubmatch(logs, -1) {
		if documented[m[2]] == nil {
			documented[m[2]] = map[string]bool{}
		}
		documented[m[2]][m[1]] = true
	}
	inCode := map[string]bool{}
	for _, dir := range []string{"../../cmd", "../../internal"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range logCall.FindAllStringSubmatch(string(src), -1) {
				level, msg := strings.ToLower(m[1]), m[2]
				inCode[msg] = true
				if !documented[msg][level] {
					t.Errorf("%s logs %s %q: no row at that level in docs/metrics.md's Logs", path, level, msg)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(inCode) < 30 {
		t.Fatalf("found only %d log messages in the code: is the pattern still right?", len(inCode))
	}
	for msg := range documented {
		if !inCode[msg] {
			t.Errorf("docs/metrics.md documents %q, which nothing logs", msg)
		}
	}
}
