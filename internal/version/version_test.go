package version

import (
	"runtime/debug"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestFormat(t *testing.T) {
	vcs := func(kv ...string) *debug.BuildInfo {
		info := &debug.BuildInfo{GoVersion: "go1.26.8"}
		for i := 0; i < len(kv); i += 2 {
			info.Settings = append(info.Settings, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return info
	}
	cases := map[string]struct {
		version string
		info    *debug.BuildInfo
		want    string
	}{
		"no build info": {
			version: "dev",
			want:    "dev (go1.0 linux/amd64)",
		},
		"built outside a git checkout": {
			version: "dev",
			info:    vcs(),
			want:    "dev (go1.26.8 linux/amd64)",
		},
		"clean checkout, release stamped by make build": {
			version: "v0.1.0",
			info:    vcs("vcs", "git", "vcs.revision", "7b8f049a1c2e3d4f5a6b7c8d9e0f1a2b3c4d5e6f", "vcs.time", "2026-11-22T01:02:03Z", "vcs.modified", "false"),
			want:    "v0.1.0 (go1.26.8 linux/amd64, revision 7b8f049a1c2e, 2026-11-22T01:02:03Z)",
		},
		"uncommitted changes": {
			version: "v0.1.0-3-g7b8f049-dirty",
			info:    vcs("vcs.revision", "7b8f049", "vcs.modified", "true"),
			want:    "v0.1.0-3-g7b8f049-dirty (go1.26.8 linux/amd64, revision 7b8f049, modified)",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(format(tc.version, "go1.0", "linux/amd64", tc.info)).To(Equal(tc.want))
		})
	}
}

func TestStringStartsWithVersion(t *testing.T) {
	g := NewWithT(t)
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v9.9.9"
	g.Expect(strings.HasPrefix(String(), "v9.9.9 (go")).To(BeTrue(), String())
}
