package test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// skaffoldSchema is the newest skaffold.yaml schema the skaffold v2 releases know.
const skaffoldSchema = "skaffold/v4beta13"

// skaffoldConfig is the part of skaffold.yaml these checks read; decoding is
// strict, so a misspelled field there fails here.
type skaffoldConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Build struct {
		TagPolicy map[string]any `json:"tagPolicy"`
		Local     map[string]any `json:"local"`
		Artifacts []struct {
			Image  string `json:"image"`
			Docker struct {
				Dockerfile string `json:"dockerfile"`
				Target     string `json:"target"`
			} `json:"docker"`
		} `json:"artifacts"`
	} `json:"build"`
	Deploy   skaffoldDeploy `json:"deploy"`
	Profiles []struct {
		Name    string `json:"name"`
		Patches []struct {
			Op    string `json:"op"`
			Path  string `json:"path"`
			Value any    `json:"value"`
		} `json:"patches"`
		PortForward []struct {
			ResourceType string `json:"resourceType"`
			ResourceName string `json:"resourceName"`
			Port         int32  `json:"port"`
			LocalPort    int    `json:"localPort"`
		} `json:"portForward"`
	} `json:"profiles"`
}

type skaffoldDeploy struct {
	Helm struct {
		Releases []struct {
			Name              string            `json:"name"`
			ChartPath         string            `json:"chartPath"`
			ValuesFiles       []string          `json:"valuesFiles"`
			SetValues         map[string]any    `json:"setValues"`
			SetValueTemplates map[string]string `json:"setValueTemplates"`
		} `json:"releases"`
	} `json:"helm"`
}

// TestSkaffold: skaffold.yaml names the current schema, builds every
// Dockerfile target the chart's images come from, and deploys values the
// chart accepts (the schema refuses unknown keys), for each profile.
func TestSkaffold(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "skaffold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sk skaffoldConfig
	if err := yaml.UnmarshalStrict(data, &sk); err != nil {
		t.Fatalf("skaffold.yaml: %v", err)
	}
	if sk.APIVersion != skaffoldSchema || sk.Kind != "Config" {
		t.Errorf("skaffold.yaml: %s %s, want %s Config", sk.APIVersion, sk.Kind, skaffoldSchema)
	}
	stages := dockerfileStages(t)
	images := map[string]bool{}
	for _, a := range sk.Build.Artifacts {
		if a.Docker.Dockerfile != "Dockerfile" || !stages[a.Docker.Target] {
			t.Errorf("artifact %s: Dockerfile %q target %q: no such stage", a.Image, a.Docker.Dockerfile, a.Docker.Target)
		}
		images[strings.NewReplacer("/", "_", "-", "_").Replace(a.Image)] = true
	}
	if len(sk.Deploy.Helm.Releases) != 1 {
		t.Fatalf("want one helm release, got %d", len(sk.Deploy.Helm.Releases))
	}
	rel := sk.Deploy.Helm.Releases[0]
	if filepath.Clean(rel.ChartPath) != "charts/pgrelay" || rel.Name != releaseName {
		t.Errorf("release %s deploys %s; want %s from charts/pgrelay", rel.Name, rel.ChartPath, releaseName)
	}
	// The values skaffold sets, with plausible stand-ins for its templates.
	tmplVar := regexp.MustCompile(`\.IMAGE_(REPO|TAG|DIGEST)_([A-Za-z0-9_]+)`)
	set := map[string]any{}
	for k, v := range rel.SetValueTemplates {
		for _, m := range tmplVar.FindAllStringSubmatch(v, -1) {
			if !images[m[2]] {
				t.Errorf("setValueTemplates %s uses %s, which names no artifact", k, m[0])
			}
		}
		stand := "stand-in"
		switch {
		case strings.Contains(v, "IMAGE_REPO_"):
			stand = "registry.example.com/pgrelay"
		case strings.Contains(v, "IMAGE_TAG_"):
			stand = "abc123"
		case strings.Contains(v, "DATABASE_URL"):
			stand = "postgres://u:p@db:5432/app"
		}
		set = merge(set, setPath(k, stand))
	}
	for k, v := range rel.SetValues {
		set = merge(set, setPath(k, v))
	}
	check := func(name string, files []string) {
		t.Run(name, func(t *testing.T) {
			vals := map[string]any{}
			for _, f := range files {
				data, err := os.ReadFile(filepath.Join(repoRoot, f))
				if err != nil {
					t.Fatal(err)
				}
				var v map[string]any
				if err := yaml.Unmarshal(data, &v); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				vals = merge(vals, v)
			}
			r := mustRender(t, merge(vals, set))
			objs := decodeAll(t, r)
			for _, d := range []string{"relay", "edge"} {
				img := container(t, objs, d).Image
				if !strings.HasPrefix(img, "registry.example.com/pgrelay:abc123") {
					t.Errorf("%s image %q does not come from skaffold's build", d, img)
				}
			}
		})
	}
	check("default", rel.ValuesFiles)
	for _, p := range sk.Profiles {
		files := append([]string(nil), rel.ValuesFiles...)
		for _, patch := range p.Patches {
			if patch.Op != "add" || patch.Path != "/deploy/helm/releases/0/valuesFiles" {
				t.Errorf("profile %s: patch %s %s is not understood by this test", p.Name, patch.Op, patch.Path)
				continue
			}
			for _, f := range patch.Value.([]any) {
				files = append(files, fmt.Sprint(f))
			}
		}
		check(p.Name, files)
		r := mustRender(t, set)
		objs := decodeAll(t, r)
		for _, pf := range p.PortForward {
			svc, ok := objs["Service/"+pf.ResourceName].(*corev1.Service)
			if pf.ResourceType != "service" || !ok {
				t.Errorf("profile %s: port-forward of %s %s, which the chart does not render", p.Name, pf.ResourceType, pf.ResourceName)
				continue
			}
			if !hasServicePort(svc, networkingPort(pf.Port)) {
				t.Errorf("profile %s: port-forward of port %d, which Service %s does not have", p.Name, pf.Port, svc.Name)
			}
		}
	}
}

// dockerfileStages returns the stage names of the Dockerfile and checks the
// final images against the chart: static non-root binaries whose entrypoint
// the chart relies on, exposing the chart's default ports.
func dockerfileStages(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	stages := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^FROM[ \t]+(?:\S+[ \t]+)+AS[ \t]+(\S+)`).FindAllStringSubmatch(text, -1) {
		stages[m[1]] = true
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath"} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile: no %s", want)
		}
	}
	r := mustRender(t, nil)
	objs := decodeAll(t, r)
	for _, c := range []string{"relay", "edge"} {
		if !stages[c] {
			t.Errorf("Dockerfile: no %s stage", c)
			continue
		}
		stage := text[strings.Index(text, "AS "+c+"\n"):]
		if i := strings.Index(stage[3:], "\nFROM "); i >= 0 {
			stage = stage[:i+3]
		}
		ctr := container(t, objs, c)
		for _, want := range []string{
			fmt.Sprintf(`ENTRYPOINT ["/%s"]`, c),
			fmt.Sprintf("EXPOSE %d", ctr.Ports[0].ContainerPort),
			fmt.Sprintf("USER %d:", *deployment(t, objs, c).Spec.Template.Spec.SecurityContext.RunAsUser),
		} {
			if !strings.Contains(stage, want) {
				t.Errorf("Dockerfile stage %s: no %s (the chart relies on it)", c, want)
			}
		}
	}
	return stages
}
