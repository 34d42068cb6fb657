package controllers_test

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// apiRequests counts the API server's requests by verb and resource, from
// its own apiserver_request_total: what a phase of a benchmark asked of it.
type apiRequests map[string]float64

// readAPIRequests scrapes the API server's request counters, or returns
// nil (and the benchmark reports no tally) if it cannot.
func readAPIRequests(ctx context.Context, cfg *rest.Config) apiRequests {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		say("no API request tally: %v", err)
		return nil
	}
	raw, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		say("no API request tally: %v", err)
		return nil
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		say("no API request tally: %v", err)
		return nil
	}
	f := families["apiserver_request_total"]
	if f == nil {
		return nil
	}
	out := apiRequests{}
	for _, m := range f.GetMetric() {
		out[requestKey(m)] += m.GetCounter().GetValue()
	}
	return out
}

// requestKey names a request kind: verb, resource and subresource
// (e.g. "PATCH virtualmachines/status").
func requestKey(m *dto.Metric) string {
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	k := labels["verb"] + " " + labels["resource"]
	if s := labels["subresource"]; s != "" {
		k += "/" + s
	}
	return k
}

// since is what happened between before and r; kinds that did not move are left out.
func (r apiRequests) since(before apiRequests) apiRequests {
	if r == nil || before == nil {
		return nil
	}
	out := apiRequests{}
	for k, v := range r {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// writes is the number of requests that change something (or try to).
func (r apiRequests) writes() float64 {
	n := 0.0
	for k, v := range r {
		switch strings.SplitN(k, " ", 2)[0] {
		case "POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "CREATE", "UPDATE", "APPLY":
			n += v
		}
	}
	return n
}

// String lists the request kinds, most first, without the long-running
// WATCH requests.
func (r apiRequests) String() string {
	if r == nil {
		return "not measured"
	}
	keys := make([]string, 0, len(r))
	for k := range r {
		if !strings.HasPrefix(k, "WATCH") {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if r[keys[i]] != r[keys[j]] {
			return r[keys[i]] > r[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, r[k]))
	}
	return fmt.Sprintf("%.0f writes: ", r.writes()) + strings.Join(parts, ", ")
}
