// Package grafana_test checks the Grafana dashboard: every panel query is
// PromQL and names only metrics the manager exports.
package grafana_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// exported are the metric names the manager serves: those internal/metrics
// declares (a histogram as its _bucket, _sum and _count series) and up,
// which Prometheus adds to every scrape.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testutil.RepoRoot(), "internal", "metrics", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{"up": true}
	histogram := regexp.MustCompile(`HistogramOpts\{\s*Name:\s*"(poolkeeper_[a-z0-9_]+)"`)
	name := regexp.MustCompile(`"(poolkeeper_[a-z0-9_]+)"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllSubmatch(src, -1) {
			names[string(m[1])] = true
		}
		for _, m := range histogram.FindAllSubmatch(src, -1) {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[string(m[1])+s] = true
			}
		}
	}
	return names
}

// grafanaVars are the dashboard's variables, replaced by values the parser
// accepts.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__range", "6h", "$__interval", "1m")

// metricsOf parses expr and returns the metric names it selects.
func metricsOf(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		return nil, err
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs.Name)
		}
		return nil
	})
	return out, nil
}

func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	g := NewWithT(t)
	known := exported(t)
	g.Expect(known).To(HaveKey("poolkeeper_hosts"))
	g.Expect(known).To(HaveKey("poolkeeper_host_detection_lag_seconds_bucket"))
	raw, err := os.ReadFile("poolkeeper.json")
	g.Expect(err).NotTo(HaveOccurred())
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	g.Expect(json.Unmarshal(raw, &dash)).To(Succeed())
	queries := 0
	for _, p := range dash.Panels {
		g.Expect(p.Targets).NotTo(BeEmpty(), "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			names, err := metricsOf(tg.Expr)
			g.Expect(err).NotTo(HaveOccurred(), "panel %q: %s", p.Title, tg.Expr)
			g.Expect(names).NotTo(BeEmpty(), "panel %q: %s", p.Title, tg.Expr)
			for _, n := range names {
				g.Expect(known).To(HaveKey(n), "panel %q names %s, which the manager does not export", p.Title, n)
			}
			queries++
		}
	}
	g.Expect(queries).To(BeNumerically(">=", 10))
	// label_values(METRIC{...}, label) of the variables.
	lv := regexp.MustCompile(`^label_values\((.+), *[a-z_]+\)$`)
	for _, v := range dash.Templating.List {
		if v.Definition == "" {
			continue
		}
		m := lv.FindStringSubmatch(v.Definition)
		g.Expect(m).NotTo(BeNil(), "variable %s: %s", v.Name, v.Definition)
		names, err := metricsOf(m[1])
		g.Expect(err).NotTo(HaveOccurred(), "variable %s", v.Name)
		for _, n := range names {
			g.Expect(known).To(HaveKey(n), "variable %s names %s, which the manager does not export", v.Name, n)
		}
	}
	// The dashboard shows what the issue asks: pool health, detection lag,
	// fences, recoveries, restore and backup durations.
	for _, want := range []string{"poolkeeper_hosts", "poolkeeper_host_detection_lag_seconds_bucket", "poolkeeper_fences_total",
		"poolkeeper_vm_recovery_duration_seconds_bucket", "poolkeeper_restore_duration_seconds_sum", "poolkeeper_backup_duration_seconds_sum"} {
		g.Expect(string(raw)).To(ContainSubstring(want))
	}
}

// TestAlertsNameExportedMetrics: the same check for the alerts of
// config/prometheus.
func TestAlertsNameExportedMetrics(t *testing.T) {
	g := NewWithT(t)
	known := exported(t)
	raw, err := os.ReadFile(filepath.Join("..", "prometheus", "rules.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var pr struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	g.Expect(yaml.Unmarshal(raw, &pr)).To(Succeed())
	for _, grp := range pr.Spec.Groups {
		for _, r := range grp.Rules {
			names, err := metricsOf(r.Expr)
			g.Expect(err).NotTo(HaveOccurred(), r.Alert)
			for _, n := range names {
				g.Expect(known).To(HaveKey(n), "alert %s names %s, which the manager does not export", r.Alert, n)
			}
		}
	}
}
