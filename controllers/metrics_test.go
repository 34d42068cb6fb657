package controllers_test

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// scrape gathers poolkeeper's metrics from the manager's registry, as the
// metrics endpoint serves them: the sum of every sample (or, for
// histograms, the count) of each family, by name and labels.
func scrape(g Gomega) map[string]float64 {
	families, err := crmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
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

// After a member dies with HA on and its VMs come back, the metrics a
// Prometheus user watches have moved.
func TestMetricsMoveAfterRecovery(t *testing.T) {
	g := NewWithT(t)
	before := scrape(g)
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout, master: "h1"}, "h1", "h2", "h3")
	createVDI(t, f.ns, "p", "a-root", "nfs")
	createVM(t, f.ns, "p", "a", withDisk("a-root"), withAffinity("h2"))
	g.Eventually(runningOn(f.ns, "a"), wait, poll).Should(Equal("h2"))
	f.agents["h2"].Kill()
	g.Eventually(runningOn(f.ns, "a"), wait, poll).Should(BeElementOf("h1", "h3"))
	g.Eventually(func(g Gomega) map[string]float64 { return scrape(g) }, wait, poll).Should(And(
		HaveKeyWithValue("poolkeeper_host_detection_lag_seconds", BeNumerically(">", before["poolkeeper_host_detection_lag_seconds"])),
		HaveKeyWithValue("poolkeeper_fences_total{method=Agent,result=fenced}",
			BeNumerically(">", before["poolkeeper_fences_total{method=Agent,result=fenced}"])),
		HaveKeyWithValue("poolkeeper_vms_reset_total", BeNumerically(">", before["poolkeeper_vms_reset_total"])),
		HaveKeyWithValue("poolkeeper_vms_restarted_total", BeNumerically(">", before["poolkeeper_vms_restarted_total"])),
		HaveKeyWithValue("poolkeeper_vm_recovery_duration_seconds", BeNumerically(">", before["poolkeeper_vm_recovery_duration_seconds"])),
		HaveKeyWithValue("poolkeeper_vdi_locks_acquired_total", BeNumerically(">=", before["poolkeeper_vdi_locks_acquired_total"]+2)),
		HaveKeyWithValue("poolkeeper_vdi_locks_released_total{reason=HolderFenced}",
			BeNumerically(">", before["poolkeeper_vdi_locks_released_total{reason=HolderFenced}"])),
		HaveKeyWithValue("poolkeeper_master_changes_total{reason=MasterElected}",
			BeNumerically(">", before["poolkeeper_master_changes_total{reason=MasterElected}"])),
	))
	g.Expect(getVM(g, f.ns, "a").Status.LastReset).To(HaveField("Host", "h2"))
}
