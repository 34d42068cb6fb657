package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is the release of this build. `make build` sets it from git
// describe with
//
//	-ldflags "-X github.com/poolkeeper/poolkeeper/internal/version.Version=v0.1.0"
//
// and a plain `go build` leaves it "dev".
var Version = "dev"

// String returns Version with the Go version, platform and, when the binary
// was built from a git checkout, the VCS revision, its time and whether the
// tree had uncommitted changes, e.g.
// "v0.1.0 (go1.26.8 linux/amd64, revision 7b8f049a1c2e, 2026-11-22T01:02:03Z, modified)".
func String() string {
	info, _ := debug.ReadBuildInfo()
	return format(Version, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH, info)
}

// format renders a version line from its parts; info may be nil (a binary
// built without module support).
func format(version, goVersion, platform string, info *debug.BuildInfo) string {
	if info != nil && info.GoVersion != "" {
		goVersion = info.GoVersion
	}
	parts := []string{goVersion + " " + platform}
	settings := map[string]string{}
	if info != nil {
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
	}
	if rev := settings["vcs.revision"]; rev != "" {
		parts = append(parts, "revision "+shortRevision(rev))
	}
	if at := settings["vcs.time"]; at != "" {
		parts = append(parts, at)
	}
	if settings["vcs.modified"] == "true" {
		parts = append(parts, "modified")
	}
	return fmt.Sprintf("%s (%s)", version, strings.Join(parts, ", "))
}

// shortRevision keeps the first 12 hex digits of a git revision, as
// `git log --abbrev=12` shows it.
func shortRevision(rev string) string {
	const n = 12
	if len(rev) > n {
		return rev[:n]
	}
	return rev
}
