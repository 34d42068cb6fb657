package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"
)

// TestKrewManifest renders krew.yaml as make plugin-dist does and checks
// that it is a krew Plugin with an archive and checksum for every platform.
func TestKrewManifest(t *testing.T) {
	g := NewWithT(t)
	tmpl, err := os.ReadFile("krew.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	sum := strings.Repeat("ab", 32)
	rendered := os.Expand(string(tmpl), func(k string) string {
		switch {
		case k == "VERSION":
			return "v0.1.0"
		case k == "URI":
			return "https://github.com/poolkeeper/poolkeeper/releases/download/v0.1.0"
		case strings.HasPrefix(k, "SHA256_"):
			return sum
		}
		t.Errorf("unknown field ${%s}", k)
		return ""
	})
	var m struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct{ Name string }
		Spec       struct {
			Version          string
			ShortDescription string `json:"shortDescription"`
			Platforms        []struct {
				Selector struct {
					MatchLabels map[string]string `json:"matchLabels"`
				}
				URI    string `json:"uri"`
				SHA256 string `json:"sha256"`
				Bin    string `json:"bin"`
			}
		}
	}
	g.Expect(yaml.Unmarshal([]byte(rendered), &m)).To(Succeed())
	g.Expect(m.APIVersion).To(Equal("krew.googlecontainertools.github.com/v1alpha2"))
	g.Expect(m.Kind).To(Equal("Plugin"))
	g.Expect(m.Metadata.Name).To(Equal("poolkeeper"), "krew runs it as kubectl poolkeeper")
	g.Expect(m.Spec.Version).To(MatchRegexp(`^v\d+\.\d+\.\d+`))
	g.Expect(m.Spec.Platforms).To(HaveLen(4))
	for _, p := range m.Spec.Platforms {
		os, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		g.Expect(p.URI).To(HaveSuffix("_" + os + "_" + arch + ".tar.gz"))
		g.Expect(p.SHA256).To(MatchRegexp(`^[0-9a-f]{64}$`))
		g.Expect(p.Bin).To(Equal("kubectl-poolkeeper"))
	}
	g.Expect(regexp.MustCompile(`\$\{`).MatchString(rendered)).To(BeFalse())
}
