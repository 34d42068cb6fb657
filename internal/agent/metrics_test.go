package agent_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/poolkeeper/poolkeeper/internal/agent"
)

// exemptionCount is how many exemptions the agent of host in ns was
// granted and saw end, and how many durations it recorded (their sum in
// seconds).
func exemptionCount(ns, host string) (granted, ended, observed int, seconds float64) {
	granted = int(testutil.ToFloat64(agent.ExemptionsGranted.WithLabelValues(ns, host)))
	ended = int(testutil.ToFloat64(agent.ExemptionsEnded.WithLabelValues(ns, host)))
	m := &dto.Metric{}
	if h, ok := agent.ExemptionDuration.WithLabelValues(ns, host).(interface{ Write(*dto.Metric) error }); ok && h.Write(m) == nil {
		observed, seconds = int(m.GetHistogram().GetSampleCount()), m.GetHistogram().GetSampleSum()
	}
	return granted, ended, observed, seconds
}

// The agent counts the outage exemptions the statefile grants and ends, and
// how long each held: one each per host for an outage of the whole pool
// (the gauge 1 meanwhile), none for a host cut off alone.
func TestExemptionMetrics(t *testing.T) {
	g := NewWithT(t)
	const timeout = 2 * time.Second
	names := []string{"h1", "h2", "h3"}
	ns := setupOutagePool(t, timeout, names...)
	hosts := startOutageHosts(t, ns, names...)
	for _, h := range names {
		granted, ended, _, _ := exemptionCount(ns, h)
		g.Expect([]int{granted, ended}).To(Equal([]int{0, 0}), "%s: no exemption before an outage", h)
	}

	for _, h := range hosts {
		h.proxy.Cut()
	}
	for _, h := range names {
		g.Eventually(func() int { granted, _, _, _ := exemptionCount(ns, h); return granted }, 20*time.Second,
			50*time.Millisecond).Should(Equal(1), "%s counts the exemption granted", h)
		g.Expect(testutil.ToFloat64(agent.Exempt.WithLabelValues(ns, h))).To(Equal(1.0), "%s says it is exempt", h)
	}
	time.Sleep(timeout) // ridden out for a while
	restored := make(map[string]time.Time, len(hosts))
	for _, h := range hosts {
		restored[h.name] = renewTime(ns, h.name)
		h.proxy.Restore()
	}
	for _, h := range names {
		g.Eventually(func() int { _, ended, _, _ := exemptionCount(ns, h); return ended }, 20*time.Second,
			50*time.Millisecond).Should(Equal(1), "%s counts the exemption ended", h)
		granted, _, observed, seconds := exemptionCount(ns, h)
		g.Expect(granted).To(Equal(1), "%s: one exemption for one outage", h)
		g.Expect(observed).To(Equal(1), "%s records how long its exemption held", h)
		g.Expect(seconds).To(BeNumerically(">=", timeout.Seconds()), "%s was exempt for at least the time cut off past the grant", h)
		g.Expect(testutil.ToFloat64(agent.Exempt.WithLabelValues(ns, h))).To(Equal(0.0), "%s is no longer exempt", h)
	}

	// h1 cut off alone is not exempt: it self-fences, no exemption counted.
	// (Once every host renewed again: a peer still without a renewal since
	// the outage would rightly count as cut off with h1.)
	for _, h := range hosts {
		g.Eventually(func() bool { return renewTime(ns, h.name).After(restored[h.name]) }, 20*time.Second,
			50*time.Millisecond).Should(BeTrue(), "%s renews once connected again", h.name)
	}
	hosts[0].proxy.Cut()
	g.Eventually(hosts[0].running, 20*time.Second, 50*time.Millisecond).Should(BeEmpty(), "h1 cut off alone self-fences")
	granted, _, _, _ := exemptionCount(ns, "h1")
	g.Expect(granted).To(Equal(1), "h1 cut off alone gets no exemption")
	g.Expect(testutil.CollectAndCount(agent.Metrics)).To(BeNumerically(">", 0), "the agent's registry gathers its metrics")
}
