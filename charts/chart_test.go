package charts_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/yaml"

	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// render renders the chart as helm install does, CRDs first, and returns
// the documents.
func render(g Gomega, namespace string, values map[string]any) []string {
	chart, err := loader.Load("poolkeeper")
	g.Expect(err).NotTo(HaveOccurred())
	vals, err := chartutil.ToRenderValues(chart, values,
		chartutil.ReleaseOptions{Name: "pk", Namespace: namespace, IsInstall: true}, chartutil.DefaultCapabilities)
	g.Expect(err).NotTo(HaveOccurred())
	files, err := engine.Render(chart, vals)
	g.Expect(err).NotTo(HaveOccurred())
	var docs []string
	for _, crd := range chart.CRDObjects() {
		docs = append(docs, string(crd.File.Data))
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range strings.Split(files[name], "\n---") {
			if strings.TrimSpace(strings.TrimPrefix(doc, "\n")) != "" && strings.Contains(doc, "kind:") {
				docs = append(docs, doc)
			}
		}
	}
	return docs
}

// kinds are the kind of each document.
func kindOf(g Gomega, doc string) string {
	var o struct {
		Kind string `json:"kind"`
	}
	g.Expect(yaml.Unmarshal([]byte(doc), &o)).To(Succeed(), doc)
	return o.Kind
}

func TestChartRendersAndApplies(t *testing.T) {
	for name, tc := range map[string]struct {
		values map[string]any
		want   []string
	}{
		"defaults": {values: map[string]any{}, want: []string{
			"deployment.apps/pk-poolkeeper-manager serverside-applied (server dry run)",
			"clusterrole.rbac.authorization.k8s.io/pk-poolkeeper-manager serverside-applied (server dry run)",
			"service/pk-poolkeeper-metrics serverside-applied (server dry run)",
			"poddisruptionbudget.policy/pk-poolkeeper-manager serverside-applied (server dry run)"}},
		"namespaced, monitoring, certificates": {values: map[string]any{
			"image":           map[string]any{"tag": "v9.9.9"},
			"replicas":        3,
			"watchNamespaces": []any{"pools-a", "pools-b"},
			"serviceMonitor":  map[string]any{"enabled": true},
			"prometheusRule":  map[string]any{"enabled": true},
			"metrics":         map[string]any{"certSecretName": "metrics-tls"},
			"redfish":         map[string]any{"caBundleConfigMap": "bmc-ca"},
			"resources":       map[string]any{"limits": map[string]any{"memory": "1Gi"}},
		}, want: []string{
			"role.rbac.authorization.k8s.io/pk-poolkeeper-manager serverside-applied (server dry run)",
			"clusterrole.rbac.authorization.k8s.io/pk-poolkeeper-csr-approver serverside-applied (server dry run)",
			"deployment.apps/pk-poolkeeper-manager serverside-applied (server dry run)"}},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			ns := "pk-" + strings.ReplaceAll(strings.ReplaceAll(name, ",", ""), " ", "-")
			docs := render(g, ns, tc.values)
			var apply, monitoring []string
			for _, d := range docs {
				switch kindOf(g, d) {
				case "ServiceMonitor", "PrometheusRule":
					// Their CRDs are the Prometheus Operator's, not in envtest.
					monitoring = append(monitoring, d)
				default:
					apply = append(apply, d)
				}
			}
			all := strings.Join(docs, "\n---\n")
			for _, ns := range []string{"pools-a", "pools-b"} {
				if strings.Contains(all, "namespace: "+ns) {
					_, _ = kubectl("", "create", "namespace", ns)
				}
			}
			out := dryRunApply(g, strings.Join(apply, "\n---\n"), ns)
			for _, w := range tc.want {
				g.Expect(out).To(ContainSubstring(w))
			}
			if name == "defaults" {
				g.Expect(monitoring).To(BeEmpty())
				g.Expect(all).To(ContainSubstring("image: \"ghcr.io/poolkeeper/poolkeeper:v0.1.0\""))
				g.Expect(all).To(ContainSubstring("replicas: 2"))
				return
			}
			g.Expect(monitoring).To(HaveLen(2))
			for _, w := range []string{"image: \"ghcr.io/poolkeeper/poolkeeper:v9.9.9\"", "replicas: 3", "--namespace=pools-a,pools-b",
				"--metrics-cert-path=/etc/poolkeeper/metrics-cert", "secretName: metrics-tls",
				"value: /etc/ssl/certs:/etc/poolkeeper/redfish-ca", "name: bmc-ca", "memory: 1Gi", "alert: PoolkeeperManagerDown"} {
				g.Expect(all).To(ContainSubstring(w))
			}
			g.Expect(all).NotTo(ContainSubstring("kind: ClusterRoleBinding\nmetadata:\n  name: pk-poolkeeper-manager\n"))
		})
	}
}

// TestChartCopiesAreCurrent: the chart carries copies of the CRDs, the
// manager's RBAC rules and the alerts; make chart refreshes them.
func TestChartCopiesAreCurrent(t *testing.T) {
	g := NewWithT(t)
	root := testutil.RepoRoot()
	pairs := map[string]string{
		filepath.Join("poolkeeper", "files", "role.yaml"):  filepath.Join(root, "config", "rbac", "role.yaml"),
		filepath.Join("poolkeeper", "files", "rules.yaml"): filepath.Join(root, "config", "prometheus", "rules.yaml"),
	}
	crds, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	for _, c := range crds {
		pairs[filepath.Join("poolkeeper", "crds", filepath.Base(c))] = c
	}
	copies, err := filepath.Glob(filepath.Join("poolkeeper", "crds", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(copies).To(HaveLen(len(crds)), "charts/poolkeeper/crds differs from config/crd/bases: run make chart")
	for cp, src := range pairs {
		a, err := os.ReadFile(cp)
		g.Expect(err).NotTo(HaveOccurred(), "run make chart")
		b, err := os.ReadFile(src)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(a)).To(Equal(string(b)), "charts/%s is not a copy of %s: run make chart", cp, src)
	}
}
