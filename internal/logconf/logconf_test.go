package logconf

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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

// logMethods are slog's logging methods, with the index of the message
// among their arguments.
var logMethods = map[string]int{
	"Debug": 0, "Info": 0, "Warn": 0, "Error": 0,
	"DebugContext": 1, "InfoContext": 1, "WarnContext": 1, "ErrorContext": 1,
	"Log": 2, "LogAttrs": 2,
}

// adapters log messages made by another library, documented as such.
var adapters = map[string]bool{"internal/redisbus/logger.go": true}

// docRow finds a row of the Logs tables: | level | `msg` | ...
var docRow = regexp.MustCompile("(?m)^\\| (debug|info|warn|error) \\| `([^`]+)` \\|")

// isLogger reports whether x is how this code names a logger: log,
// something.log, slog or slog.Default().
func isLogger(x ast.Expr) bool {
	switch x := x.(type) {
	case *ast.Ident:
		return x.Name == "log" || x.Name == "slog"
	case *ast.SelectorExpr:
		return x.Sel.Name == "log"
	case *ast.CallExpr:
		sel, ok := x.Fun.(*ast.SelectorExpr)
		return ok && sel.Sel.Name == "Default"
	}
	return false
}

// TestEveryLogLineIsDocumented: each message the binaries log (found in
// the syntax trees of cmd/ and internal/, tests aside) has a row, at its
// level, in docs/metrics.md's Logs section, and each row there is a line
// the code still logs. A message that is not a string literal fails: it
// could not be searched for.
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
	fset := token.NewFileSet()
	for _, dir := range []string{"../../cmd", "../../internal"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			rel := strings.TrimPrefix(filepath.ToSlash(path), "../../")
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !isLogger(sel.X) {
					return true
				}
				at, ok := logMethods[sel.Sel.Name]
				if !ok || len(call.Args) <= at {
					return true
				}
				lit, ok := call.Args[at].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					if !adapters[rel] {
						t.Errorf("%s: a %s call whose message is not a string literal", fset.Position(call.Pos()), sel.Sel.Name)
					}
					return true
				}
				msg, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				level := strings.ToLower(strings.TrimSuffix(sel.Sel.Name, "Context"))
				if sel.Sel.Name == "Log" || sel.Sel.Name == "LogAttrs" {
					level = "" // the level is an argument: any documented one will do
				}
				inCode[msg] = true
				if len(documented[msg]) == 0 || (level != "" && !documented[msg][level]) {
					t.Errorf("%s logs %s %q: no row at that level in docs/metrics.md's Logs", fset.Position(call.Pos()), level, msg)
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(inCode) < 30 {
		t.Fatalf("found only %d log messages in the code: is the walk still right?", len(inCode))
	}
	for msg := range documented {
		if !inCode[msg] {
			t.Errorf("docs/metrics.md documents %q, which nothing logs", msg)
		}
	}
}
