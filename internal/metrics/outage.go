package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// OutageRiddenOut is how long each storm guard held before it was lifted
	// (an outage the pool rode out, counted afresh after).
	OutageRiddenOut = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "poolkeeper_outage_ridden_out_seconds",
		Help:    "How long the storm guard held (hosts cut off at once, nobody fenced) before it was lifted.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	// OutageHosts is how many hosts were stale at once at the peak of the
	// last outage ridden out.
	OutageHosts = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "poolkeeper_outage_ridden_out_hosts",
		Help: "Hosts stale at once at the peak of the last outage the storm guard rode out.",
	})
)

// OperatorOutage is how long the operator itself could not reach the API
// server, each time it could again (its hosts' silence then counts afresh).
var OperatorOutage = prometheus.NewHistogram(prometheus.HistogramOpts{
	Name:    "poolkeeper_operator_api_outage_seconds",
	Help:    "How long the operator could not reach the API server, observed when it could again (every pool's silence then counts afresh).",
	Buckets: prometheus.ExponentialBuckets(1, 2, 12),
})

// OperatorStall is how long the operator itself did not run (stopped, or
// starved of CPU), each time it found it had not (its hosts' silence then
// counts afresh).
var OperatorStall = prometheus.NewHistogram(prometheus.HistogramOpts{
	Name:    "poolkeeper_operator_stall_seconds",
	Help:    "How long the operator did not run (stopped or starved), observed at its resume (every pool's silence then counts afresh).",
	Buckets: prometheus.ExponentialBuckets(1, 2, 12),
})

func init() {
	crmetrics.Registry.MustRegister(OutageRiddenOut, OutageHosts, OperatorOutage, OperatorStall)
}

// ObserveOutageRiddenOut records an outage ridden out: held for d, with
// hosts stale at its peak.
func ObserveOutageRiddenOut(d time.Duration, hosts int) {
	OutageRiddenOut.Observe(d.Seconds())
	OutageHosts.Set(float64(hosts))
}
