package agent

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the agent's own registry: the outage exemptions the heartbeat
// SR's statefile granted this process's agents. A binary that serves the
// agent's metrics serves this registry.
var Metrics = prometheus.NewRegistry()

var (
	// ExemptionsGranted counts the outage exemptions granted (liveness.Survive
	// confirmed that the pool's majority is cut off from the API server, this
	// host among them, after it was not).
	ExemptionsGranted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "poolkeeper_agent_outage_exemptions_granted_total",
		Help: "Outage exemptions granted: the statefile showed the pool's majority cut off from the API server, this host among them, so its VMs stayed.",
	}, []string{"namespace", "host"})
	// ExemptionsEnded counts the exemptions that ended (peers renew again, the
	// statefile cannot be read, or this host renewed).
	ExemptionsEnded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "poolkeeper_agent_outage_exemptions_ended_total",
		Help: "Outage exemptions ended: the statefile no longer confirms the outage (or this host renewed); it renews or self-fences by the last confirmation's bound.",
	}, []string{"namespace", "host"})
	// ExemptionDuration is how long each exemption held, from its grant to its end.
	ExemptionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "poolkeeper_agent_outage_exemption_seconds",
		Help:    "How long each outage exemption held, from the statefile read that granted it to the one that ended it.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	}, []string{"namespace", "host"})
	// Exempt is 1 while this host rides out an outage on an exemption.
	Exempt = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "poolkeeper_agent_outage_exempt",
		Help: "1 while the host keeps its VMs on an outage exemption, else 0.",
	}, []string{"namespace", "host"})
)

func init() { Metrics.MustRegister(ExemptionsGranted, ExemptionsEnded, ExemptionDuration, Exempt) }

// exemptionMetrics remembers when each agent's current exemption was granted.
var exemptionMetrics = struct {
	sync.Mutex
	since map[*Agent]time.Time
}{since: map[*Agent]time.Time{}}

// noteExemptionGranted counts an exemption granted at now.
func (a *Agent) noteExemptionGranted(now time.Time) {
	exemptionMetrics.Lock()
	exemptionMetrics.since[a] = now
	exemptionMetrics.Unlock()
	ExemptionsGranted.WithLabelValues(a.cfg.Namespace, a.cfg.Host).Inc()
	Exempt.WithLabelValues(a.cfg.Namespace, a.cfg.Host).Set(1)
}

// noteExemptionEnded counts the end at now of the exemption granted last.
func (a *Agent) noteExemptionEnded(now time.Time) {
	exemptionMetrics.Lock()
	since, ok := exemptionMetrics.since[a]
	delete(exemptionMetrics.since, a)
	exemptionMetrics.Unlock()
	ExemptionsEnded.WithLabelValues(a.cfg.Namespace, a.cfg.Host).Inc()
	Exempt.WithLabelValues(a.cfg.Namespace, a.cfg.Host).Set(0)
	if ok {
		ExemptionDuration.WithLabelValues(a.cfg.Namespace, a.cfg.Host).Observe(now.Sub(since).Seconds())
	}
}
