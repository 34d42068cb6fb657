// Package version says which build of poolkeeper is running: the release
// stamped in at link time (Version) and what the Go toolchain recorded in the
// binary (its Go version and VCS revision). The manager, the agent and the
// embedded control plane print it for --version.
package version
