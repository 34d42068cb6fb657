// Package prometheus_test checks the Prometheus Operator objects of
// config/prometheus: the alerts with promtool on series that reproduce each,
// their runbooks in the README, and the ServiceMonitor against the manager's
// metrics Service.
package prometheus_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

type ruleFile struct {
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// TestAlertsFireOnTheirSeries runs promtool check rules and promtool test
// rules (rules_test.yaml) on the rules of the PrometheusRule.
func TestAlertsFireOnTheirSeries(t *testing.T) {
	g := NewWithT(t)
	promtool := promtoolPath(t)
	raw, err := os.ReadFile("rules.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	var pr map[string]any
	g.Expect(yaml.Unmarshal(raw, &pr)).To(Succeed())
	groups, err := yaml.Marshal(pr["spec"])
	g.Expect(err).NotTo(HaveOccurred())
	dir := t.TempDir()
	g.Expect(os.WriteFile(filepath.Join(dir, "rules.extracted.yaml"), groups, 0o600)).To(Succeed())
	tests, err := os.ReadFile("rules_test.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(filepath.Join(dir, "rules_test.yaml"), tests, 0o600)).To(Succeed())

	for _, args := range [][]string{{"check", "rules", "rules.extracted.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), "promtool %s:\n%s", strings.Join(args, " "), out)
	}

	// Every alert has a test that makes it fire.
	var rf ruleFile
	g.Expect(yaml.Unmarshal(raw, &rf)).To(Succeed())
	for _, grp := range rf.Spec.Groups {
		for _, r := range grp.Rules {
			g.Expect(string(tests)).To(ContainSubstring("alertname: "+r.Alert+"\n    exp_alerts:\n    - "),
				"alert %s has no test that makes it fire", r.Alert)
		}
	}
}

// TestEveryAlertHasARunbook: each alert names its severity and a runbook
// that is a section of the README.
func TestEveryAlertHasARunbook(t *testing.T) {
	g := NewWithT(t)
	raw, err := os.ReadFile("rules.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	var rf ruleFile
	g.Expect(yaml.Unmarshal(raw, &rf)).To(Succeed())
	readme, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "README.md"))
	g.Expect(err).NotTo(HaveOccurred())
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllSubmatch(readme, -1) {
		anchors[slug(string(m[1]))] = true
	}
	n := 0
	for _, grp := range rf.Spec.Groups {
		for _, r := range grp.Rules {
			n++
			g.Expect(r.Labels["severity"]).To(BeElementOf("warning", "critical"), r.Alert)
			g.Expect(r.Annotations["summary"]).NotTo(BeEmpty(), r.Alert)
			url := r.Annotations["runbook_url"]
			g.Expect(url).To(HavePrefix("https://github.com/poolkeeper/poolkeeper/blob/main/README.md#"), r.Alert)
			anchor := url[strings.Index(url, "#")+1:]
			g.Expect(anchors).To(HaveKey(anchor), "alert %s: README.md has no section #%s", r.Alert, anchor)
		}
	}
	g.Expect(n).To(Equal(8))
}

// slug is GitHub's anchor for a heading.
func slug(heading string) string {
	s := strings.ToLower(strings.TrimSpace(heading))
	s = regexp.MustCompile("[^a-z0-9 _-]").ReplaceAllString(s, "")
	return strings.ReplaceAll(s, " ", "-")
}

// TestServiceMonitorSelectsTheMetricsService: the ServiceMonitor's selector
// and port are those of config/manager's metrics Service.
func TestServiceMonitorSelectsTheMetricsService(t *testing.T) {
	g := NewWithT(t)
	var sm struct {
		Spec struct {
			JobLabel string `json:"jobLabel"`
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct {
				Port string `json:"port"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	raw, err := os.ReadFile("monitor.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(yaml.Unmarshal(raw, &sm)).To(Succeed())
	manager, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "config", "manager", "manager.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	found := false
	for _, doc := range bytes.Split(manager, []byte("\n---\n")) {
		var svc struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec struct {
				Ports []struct {
					Name string `json:"name"`
				} `json:"ports"`
			} `json:"spec"`
		}
		g.Expect(yaml.Unmarshal(doc, &svc)).To(Succeed())
		if svc.Kind != "Service" {
			continue
		}
		found = true
		for k, v := range sm.Spec.Selector.MatchLabels {
			g.Expect(svc.Metadata.Labels).To(HaveKeyWithValue(k, v))
		}
		g.Expect(svc.Metadata.Labels).To(HaveKeyWithValue(sm.Spec.JobLabel, "poolkeeper"), "the alerts expect job=\"poolkeeper\"")
		g.Expect(svc.Spec.Ports).To(ContainElement(HaveField("Name", sm.Spec.Endpoints[0].Port)))
	}
	g.Expect(found).To(BeTrue())
}

// promtoolPath returns the path of promtool, installing Debian's prometheus
// package when it is missing and this is a root shell with apt-get. Without
// it the test fails, saying why.
func promtoolPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if _, err := exec.LookPath("apt-get"); err == nil && os.Geteuid() == 0 {
		install := []string{"install", "-y", "-o", "DPkg::Lock::Timeout=600", "--no-install-recommends", "prometheus"}
		out, err := aptGet(install...)
		if err != nil {
			// The package lists may be missing or stale on a fresh machine.
			if upd, uerr := aptGet("update", "-o", "DPkg::Lock::Timeout=600"); uerr != nil {
				t.Logf("apt-get update: %v\n%s", uerr, upd)
			}
			out, err = aptGet(install...)
		}
		if err != nil {
			t.Logf("apt-get install prometheus: %v\n%s", err, out)
		}
		if p, err := exec.LookPath("promtool"); err == nil {
			return p
		}
	}
	t.Fatal("promtool is not installed and could not be installed (apt-get install prometheus, as root)")
	return ""
}

func aptGet(args ...string) ([]byte, error) {
	cmd := exec.Command("apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return cmd.CombinedOutput()
}
