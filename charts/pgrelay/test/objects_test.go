package test

import (
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// strictDecoder decodes into client-go's typed API objects and fails on
// unknown fields, duplicate fields and wrong types.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor the
// chart uses (monitoring.coreos.com/v1 is a CRD, not in client-go's scheme);
// decoding into it strictly catches a misspelled field.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// decodeAll decodes every object of r strictly; errors are reported per object.
func decodeAll(t *testing.T, r *rendering) map[string]runtime.Object {
	t.Helper()
	out := map[string]runtime.Object{}
	for _, o := range r.objects {
		key := o.meta.Kind + "/" + o.meta.Metadata.Name
		if o.meta.APIVersion == "monitoring.coreos.com/v1" {
			if o.meta.Kind != "ServiceMonitor" {
				t.Errorf("%s: unexpected kind in monitoring.coreos.com/v1", o)
				continue
			}
			var u unstructured.Unstructured
			if err := u.UnmarshalJSON(mustJSON(t, o)); err != nil {
				t.Errorf("%s: %v", o, err)
				continue
			}
			var sm serviceMonitor
			decodeInto(t, o, &sm)
			out[key] = &u
			continue
		}
		obj, gvk, err := strictDecoder.Decode(o.raw, nil, nil)
		if err != nil {
			t.Errorf("%s: strict decoding: %v\n%s", o, err, o.raw)
			continue
		}
		if gvk.Kind != o.meta.Kind {
			t.Errorf("%s: decoded as %s", o, gvk)
		}
		out[key] = obj
	}
	return out
}

// TestObjectsDecodeStrictly decodes every object of every scenario against
// the Kubernetes API types, then checks what the API server would refuse or
// a reviewer would flag: names and labels, selectors that match their pods,
// references between objects, and the secure defaults.
func TestObjectsDecodeStrictly(t *testing.T) {
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			r := mustRender(t, sc.values)
			objs := decodeAll(t, r)
			if t.Failed() {
				return
			}
			checkObjects(t, r, objs)
		})
	}
}

// podOwners returns the pod templates of the Deployments, and the test Pod, by name.
func podTemplates(objs map[string]runtime.Object) map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for key, obj := range objs {
		switch o := obj.(type) {
		case *appsv1.Deployment:
			out[key] = &o.Spec.Template
		case *corev1.Pod:
			out[key] = &corev1.PodTemplateSpec{ObjectMeta: o.ObjectMeta, Spec: o.Spec}
		}
	}
	return out
}

func checkObjects(t *testing.T, r *rendering, objs map[string]runtime.Object) {
	pods := podTemplates(objs)
	secrets := map[string]*corev1.Secret{}
	services := map[string]*corev1.Service{}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Secret:
			secrets[o.Name] = o
		case *corev1.Service:
			services[o.Name] = o
		}
	}
	existing, _ := r.values.PathValue("existingSecret.name")

	// selectsPods reports which pod templates a selector matches.
	selectsPods := func(sel labels.Selector) []string {
		var out []string
		for key, p := range pods {
			if sel.Matches(labels.Set(p.Labels)) {
				out = append(out, key)
			}
		}
		return out
	}

	for key, obj := range objs {
		m, err := metaOf(obj)
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		for _, msg := range validation.IsDNS1123Subdomain(m.GetName()) {
			t.Errorf("%s: name: %s", key, msg)
		}
		for k, v := range m.GetLabels() {
			for _, msg := range validation.IsQualifiedName(k) {
				t.Errorf("%s: label %q: %s", key, k, msg)
			}
			for _, msg := range validation.IsValidLabelValue(v) {
				t.Errorf("%s: label %s=%q: %s", key, k, v, msg)
			}
		}
		for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if m.GetLabels()[l] == "" {
				t.Errorf("%s: no %s label", key, l)
			}
		}

		switch o := obj.(type) {
		case *appsv1.Deployment:
			sel, err := metav1.LabelSelectorAsSelector(o.Spec.Selector)
			if err != nil || !sel.Matches(labels.Set(o.Spec.Template.Labels)) {
				t.Errorf("%s: selector %v does not match its pod labels %v", key, o.Spec.Selector, o.Spec.Template.Labels)
			}
			if c := o.Spec.Template.Labels["app.kubernetes.io/component"]; (c == "relay" || c == "edge") && o.Spec.Template.Annotations["checksum/config"] == "" {
				t.Errorf("%s: no checksum/config annotation", key)
			}
		case *corev1.Service:
			sel := labels.SelectorFromSet(o.Spec.Selector)
			matched := selectsPods(sel)
			if len(matched) == 0 {
				t.Errorf("%s: selector %v matches no pod", key, o.Spec.Selector)
			}
			for _, p := range o.Spec.Ports {
				if p.TargetPort.Type == 1 { // named
					for _, pk := range matched {
						if !hasContainerPort(pods[pk], p.TargetPort.StrVal) {
							t.Errorf("%s: targetPort %q is not a port of %s", key, p.TargetPort.StrVal, pk)
						}
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			sel, err := metav1.LabelSelectorAsSelector(o.Spec.Selector)
			if err != nil || len(selectsPods(sel)) == 0 {
				t.Errorf("%s: selector matches no pod", key)
			}
			if o.Spec.MinAvailable != nil && o.Spec.MaxUnavailable != nil {
				t.Errorf("%s: both minAvailable and maxUnavailable", key)
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			if _, ok := objs["Deployment/"+o.Spec.ScaleTargetRef.Name]; !ok || o.Spec.ScaleTargetRef.Kind != "Deployment" {
				t.Errorf("%s: scales %s/%s, which the chart does not render", key, o.Spec.ScaleTargetRef.Kind, o.Spec.ScaleTargetRef.Name)
			}
			if d, ok := objs["Deployment/"+o.Spec.ScaleTargetRef.Name].(*appsv1.Deployment); ok && d.Spec.Replicas != nil {
				t.Errorf("%s: its Deployment also sets replicas, which fights the HPA on every upgrade", key)
			}
		case *networkingv1.Ingress:
			for _, rule := range o.Spec.Rules {
				for _, p := range rule.HTTP.Paths {
					svc := services[p.Backend.Service.Name]
					if svc == nil {
						t.Errorf("%s: backend Service %q is not rendered", key, p.Backend.Service.Name)
						continue
					}
					if !hasServicePort(svc, p.Backend.Service.Port) {
						t.Errorf("%s: backend port %v is not a port of Service %s", key, p.Backend.Service.Port, svc.Name)
					}
				}
			}
		case *networkingv1.NetworkPolicy:
			sel, err := metav1.LabelSelectorAsSelector(&o.Spec.PodSelector)
			if err != nil || len(selectsPods(sel)) == 0 {
				t.Errorf("%s: podSelector matches no pod", key)
			}
		case *unstructured.Unstructured: // ServiceMonitor
			var sm serviceMonitor
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &sm); err != nil {
				t.Errorf("%s: %v", key, err)
				continue
			}
			sel, _ := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
			var found bool
			for _, svc := range services {
				if sel.Matches(labels.Set(svc.Labels)) {
					found = true
					for _, ep := range sm.Spec.Endpoints {
						if !hasServicePort(svc, networkingv1.ServiceBackendPort{Name: ep.Port}) {
							t.Errorf("%s: endpoint port %q is not a port of Service %s", key, ep.Port, svc.Name)
						}
					}
				}
			}
			if !found {
				t.Errorf("%s: selector matches no Service", key)
			}
		}
	}

	for key, p := range pods {
		checkPod(t, key, p, secrets, existing)
	}
}

// checkPod checks one pod template: secure defaults, resources, probes on
// declared ports, and secret references that resolve.
func checkPod(t *testing.T, key string, p *corev1.PodTemplateSpec, secrets map[string]*corev1.Secret, existingSecret any) {
	ps := p.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		t.Errorf("%s: pod does not set runAsNonRoot", key)
	}
	if ps == nil || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod does not use the RuntimeDefault seccomp profile", key)
	}
	if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it does not need", key)
	}
	for _, c := range p.Spec.Containers {
		where := fmt.Sprintf("%s container %s", key, c.Name)
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s: no securityContext", where)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s: root filesystem is writable", where)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s: allows privilege escalation", where)
		case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL":
			t.Errorf("%s: does not drop ALL capabilities", where)
		}
		if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: memory request or limit missing", where)
		}
		for _, port := range c.Ports {
			for _, msg := range validation.IsValidPortName(port.Name) {
				t.Errorf("%s: port name %q: %s", where, port.Name, msg)
			}
		}
		for name, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
			if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Port.Type != 1 {
				continue
			}
			if !hasContainerPort(&corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}, pr.HTTPGet.Port.StrVal) {
				t.Errorf("%s: %s probe port %q is not declared", where, name, pr.HTTPGet.Port.StrVal)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			if s := secrets[ref.Name]; s != nil {
				if _, ok := s.Data[ref.Key]; !ok {
					t.Errorf("%s: %s reads key %q, which Secret %s does not have", where, e.Name, ref.Key, ref.Name)
				}
			} else if ref.Name != existingSecret {
				t.Errorf("%s: %s reads Secret %q, which is neither rendered nor existingSecret.name", where, e.Name, ref.Name)
			}
		}
	}
}

func hasContainerPort(p *corev1.PodTemplateSpec, name string) bool {
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			if port.Name == name {
				return true
			}
		}
	}
	return false
}

func hasServicePort(svc *corev1.Service, bp networkingv1.ServiceBackendPort) bool {
	for _, p := range svc.Spec.Ports {
		if (bp.Name != "" && p.Name == bp.Name) || (bp.Name == "" && p.Port == bp.Number) {
			return true
		}
	}
	return false
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	if m, ok := obj.(metav1.Object); ok {
		return m, nil
	}
	return nil, fmt.Errorf("%T has no metadata", obj)
}

func mustJSON(t *testing.T, o object) []byte {
	t.Helper()
	b, err := yaml.YAMLToJSON(o.raw)
	if err != nil {
		t.Fatalf("%s: %v", o, err)
	}
	return b
}

func networkingPort(n int32) networkingv1.ServiceBackendPort {
	return networkingv1.ServiceBackendPort{Number: n}
}
