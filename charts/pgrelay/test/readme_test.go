package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/strvals"
)

// TestReadmeCommandsRender: the helm install and upgrade commands that the
// README's "Deploy on Kubernetes" section and the chart's README show render a
// valid install, as a new user would run them one after the other
// (--reuse-values keeps the previous command's values).
func TestReadmeCommandsRender(t *testing.T) {
	for _, doc := range []struct{ file, section string }{
		{filepath.Join(repoRoot, "README.md"), "## Deploy on Kubernetes"},
		{filepath.Join(chartDir, "README.md.gotmpl"), "## Install"},
	} {
		data, err := os.ReadFile(doc.file)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		i := strings.Index(text, "\n"+doc.section+"\n")
		if i < 0 {
			t.Fatalf("%s: no %q section", doc.file, doc.section)
		}
		text = text[i+1:]
		if j := strings.Index(text[3:], "\n## "); j >= 0 {
			text = text[:j+3]
		}
		cmds := helmCommands(text)
		if len(cmds) == 0 {
			t.Fatalf("%s: no helm install or upgrade command in %q", doc.file, doc.section)
		}
		vals := map[string]any{}
		for _, cmd := range cmds {
			t.Run(filepath.Base(doc.file)+"/"+cmd[1], func(t *testing.T) {
				if cmd[1] == "install" || !contains(cmd, "--reuse-values") {
					vals = map[string]any{}
				}
				for k := 2; k < len(cmd); k++ {
					switch cmd[k] {
					case "--set":
						k++
						if err := strvals.ParseInto(cmd[k], vals); err != nil {
							t.Fatalf("--set %s: %v", cmd[k], err)
						}
					case "-f", "--values", "--set-string", "--set-file":
						t.Fatalf("%s is not handled by this test", cmd[k])
					}
				}
				r, err := render(t, vals)
				if err != nil {
					t.Fatalf("%s\nrenders with an error: %v", strings.Join(cmd, " "), err)
				}
				decodeAll(t, r)
			})
		}
	}
}

// helmCommands returns the `helm install`/`helm upgrade` commands in the
// text's code blocks, as words (single quotes removed, continuations joined).
func helmCommands(text string) [][]string {
	var out [][]string
	text = strings.ReplaceAll(text, "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		words := shellWords(line)
		if len(words) >= 2 && words[0] == "helm" && (words[1] == "install" || words[1] == "upgrade") {
			out = append(out, words)
		}
	}
	return out
}

// shellWords splits a command line on blanks, keeping single-quoted text
// whole and stopping at a comment.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	var inWord, quoted bool
	for _, r := range line {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case !quoted && r == '#' && !inWord:
			return words
		case !quoted && (r == ' ' || r == '\t'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
