package controllers_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// startServingManager starts a manager for ns that serves its metrics as
// main.go does by default: HTTPS, HTTP/1.1 only, every scrape authenticated
// (TokenReview) and authorized (SubjectAccessReview) by the API server. It
// returns the metrics URL.
func startServingManager(t *testing.T, ns string) string {
	t.Helper()
	addr := freeLoopbackAddr(t)
	startManagerServing(t, ns, controllers.Options{}, metricsserver.Options{
		BindAddress:    addr,
		SecureServing:  true,
		TLSOpts:        []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
		FilterProvider: filters.WithAuthenticationAndAuthorization,
	})
	return "https://" + addr + "/metrics"
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// scraperToken returns a ServiceAccount token for ns: bound to the shipped
// poolkeeper-metrics-reader ClusterRole when reader is true.
func scraperToken(t *testing.T, ns, name string, reader bool) string {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := k8s.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if reader {
		role := &rbacv1.ClusterRole{}
		data, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "config", "rbac", "metrics_reader_role.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(data, role); err != nil {
			t.Fatal(err)
		}
		role.Name += "-" + ns // cluster-scoped: one per test
		binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}}}
		for _, o := range []client.Object{role, binding} {
			if err := k8s.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	if err := k8s.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// get fetches the metrics endpoint as Prometheus does, with an optional
// bearer token, asking for the text exposition format.
func get(url, token string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// The manager serves a self-signed certificate, as controller-runtime
	// does without a certificate directory.
	c := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed
	return c.Do(req)
}

// scrapeEndpoint reads poolkeeper's metrics from the endpoint and parses
// the text exposition, as Prometheus does.
func scrapeEndpoint(g Gomega, url, token string) map[string]float64 {
	resp, err := get(url, token)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(resp.Header.Get("Content-Type")).To(HavePrefix("text/plain"))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := parser.TextToMetricFamilies(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	families := make([]*dto.MetricFamily, 0, len(byName))
	for _, f := range byName {
		families = append(families, f)
	}
	return sumFamilies(families)
}

// scrape gathers poolkeeper's metrics from the registry the endpoint serves.
func scrape(g Gomega) map[string]float64 {
	families, err := crmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	return sumFamilies(families)
}

// sumFamilies sums every sample (or, for histograms, the count) of each
// poolkeeper family, by name and labels.
func sumFamilies(families []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "poolkeeper_") {
			continue
		}
		for _, m := range f.GetMetric() {
			key := f.GetName() + labelString(m.GetLabel())
			switch {
			case m.Counter != nil:
				out[key] += m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] += m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func labelString(labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return ""
	}
	var parts []string
	for _, l := range labels {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// movedBy matches a metric that grew by at least n since before.
func movedBy(before map[string]float64, name string, n float64) OmegaMatcher {
	return HaveKeyWithValue(name, BeNumerically(">=", before[name]+n))
}

// After a member with two VMs dies with HA on and its VMs come back, the
// metrics a Prometheus user watches have moved, as the manager's HTTPS
// endpoint serves them to an authorized scraper; others are refused.
func TestMetricsMoveAfterRecovery(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout, master: "h1"})
	createSR(t, ns, "p", "nfs", "")
	for _, h := range []string{"h1", "h2", "h3"} {
		createHost(t, ns, "p", h)
	}
	url := startServingManager(t, ns)
	token := scraperToken(t, ns, "prometheus", true)

	// Only an authenticated and authorized scraper gets the metrics (a
	// token the API server rejects is a 500 from controller-runtime's filter).
	stranger := scraperToken(t, ns, "stranger", false)
	for tok, code := range map[string]OmegaMatcher{"": Equal(http.StatusUnauthorized),
		"not-a-token": BeNumerically(">=", http.StatusBadRequest), stranger: Equal(http.StatusForbidden)} {
		g.Eventually(func(g Gomega) int {
			resp, err := get(url, tok)
			g.Expect(err).NotTo(HaveOccurred())
			_ = resp.Body.Close()
			return resp.StatusCode
		}, wait, poll).Should(code)
	}
	before := scrapeEndpoint(g, url, token)

	agents := map[string]*runningAgent{}
	for _, h := range []string{"h1", "h2", "h3"} {
		agents[h] = startAgent(t, ns, h, interval, nil)
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		g.Eventually(phaseOf(ns, h), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	}
	for _, vm := range []string{"a", "b"} {
		createVDI(t, ns, "p", vm+"-root", "nfs")
		createVM(t, ns, "p", vm, withDisk(vm+"-root"), withAffinity("h2"))
		g.Eventually(runningOn(ns, vm), wait, poll).Should(Equal("h2"))
	}
	agents["h2"].Kill()
	for _, vm := range []string{"a", "b"} {
		g.Eventually(runningOn(ns, vm), wait, poll).Should(BeElementOf("h1", "h3"))
	}
	var after map[string]float64
	g.Eventually(func(g Gomega) map[string]float64 { after = scrapeEndpoint(g, url, token); return after }, wait, poll).Should(And(
		movedBy(before, "poolkeeper_host_detection_lag_seconds", 1),
		movedBy(before, "poolkeeper_fences_total{method=Agent,result=fenced}", 1),
		movedBy(before, "poolkeeper_vms_reset_total", 2),
		movedBy(before, "poolkeeper_vms_restarted_total", 2),
		movedBy(before, "poolkeeper_vm_recovery_duration_seconds", 2),
		movedBy(before, "poolkeeper_vdi_locks_acquired_total", 4), // on h2, then on the survivors
		movedBy(before, "poolkeeper_vdi_locks_released_total{reason=HolderFenced}", 2),
		movedBy(before, "poolkeeper_master_changes_total{reason=MasterElected}", 1),
	))
	for _, name := range []string{"poolkeeper_fences_total{method=Agent,result=fenced}", "poolkeeper_vms_restarted_total",
		"poolkeeper_vm_recovery_duration_seconds", "poolkeeper_vdi_locks_acquired_total"} {
		t.Logf("%s: %v -> %v", name, before[name], after[name])
	}
	g.Expect(getVM(g, ns, "a").Status.LastReset).To(HaveField("Host", "h2"))
}
