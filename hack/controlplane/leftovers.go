package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dirEnv marks the command a control plane runs (the manager) with the
// control plane's directory, so that a later run recognises exactly that
// process and not a kubectl or an agent that merely uses the kubeconfig.
const dirEnv = "POOLKEEPER_CONTROLPLANE_DIR"

// proc is what /proc says about one process.
type proc struct {
	pid  int
	exe  string   // the binary, without the " (deleted)" of one rebuilt since
	args []string // argv
	cwd  string
	env  map[string]string
}

// role is one process a control plane of a directory starts, with the pid
// file it records it in and how to recognise it: pids are reused, so a pid
// file alone proves nothing.
type role struct {
	name  string // pid file: <dir>/<name>.pid
	grace time.Duration
	owns  func(p proc, dir string) bool
}

// roles lists what a control plane starts, stopped in this order: an earlier
// control plane first (it stops its own manager, kube-apiserver and etcd
// gracefully), then whatever a SIGKILL left without a parent.
func roles(stopTimeout time.Duration) []role {
	return []role{
		{name: "controlplane", grace: stopTimeout + 20*time.Second, owns: ownsControlPlane},
		{name: "manager", grace: stopTimeout, owns: func(p proc, dir string) bool { return p.env[dirEnv] == dir }},
		{name: "kube-apiserver", grace: 10 * time.Second, owns: func(p proc, dir string) bool {
			return filepath.Base(p.exe) == "kube-apiserver" && flagValue(p.args, "cert-dir") == filepath.Join(dir, "apiserver")
		}},
		{name: "etcd", grace: 10 * time.Second, owns: func(p proc, dir string) bool {
			return filepath.Base(p.exe) == "etcd" && flagValue(p.args, "data-dir") == filepath.Join(dir, "etcd")
		}},
	}
}

// ownsControlPlane: a controlplane binary whose --dir, resolved against its
// own working directory, is dir (hack/run.sh passes a relative one).
func ownsControlPlane(p proc, dir string) bool {
	if filepath.Base(p.exe) != "controlplane" {
		return false
	}
	d := flagValue(p.args, "dir")
	if d == "" {
		d = defaultDir
	}
	if !filepath.IsAbs(d) {
		d = filepath.Join(p.cwd, d)
	}
	return filepath.Clean(d) == dir
}

// flagValue returns the value of the Go-style flag name (-name V, --name V,
// -name=V or --name=V) in args, stopping at "--"; "" when absent.
func flagValue(args []string, name string) string {
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return ""
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// readProc reads pid's /proc entry; ok is false when the process is gone (or
// a zombie) or not ours to read.
func readProc(pid int) (p proc, ok bool) {
	base := filepath.Join("/proc", strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(base, "stat"))
	if err != nil {
		return p, false
	}
	// The state follows the parenthesised command name, which may hold spaces.
	if i := strings.LastIndexByte(string(stat), ')'); i < 0 || strings.HasPrefix(string(stat[i+1:]), " Z") {
		return p, false
	}
	exe, err := os.Readlink(filepath.Join(base, "exe"))
	if err != nil {
		return p, false
	}
	p = proc{pid: pid, exe: strings.TrimSuffix(exe, " (deleted)"), env: map[string]string{}}
	p.cwd, _ = os.Readlink(filepath.Join(base, "cwd"))
	cmdline, _ := os.ReadFile(filepath.Join(base, "cmdline"))
	p.args = strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	environ, _ := os.ReadFile(filepath.Join(base, "environ"))
	for _, kv := range strings.Split(string(environ), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			p.env[k] = v
		}
	}
	return p, true
}

// pidFile is where a control plane of dir records the pid of r.
func pidFile(dir, name string) string { return filepath.Join(dir, name+".pid") }

func writePidFile(dir, name string, pid int) error {
	return os.WriteFile(pidFile(dir, name), []byte(strconv.Itoa(pid)+"\n"), 0o600)
}

func readPidFile(dir, name string) (int, bool) {
	b, err := os.ReadFile(pidFile(dir, name))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 0
}

// stopLeftovers stops what an earlier control plane of dir left running:
// each process named in a pid file that is still that process, and an etcd
// or kube-apiserver of dir orphaned while starting, before its pid file was
// written. Each gets SIGTERM, then SIGKILL after its grace period.
func stopLeftovers(dir string, stopTimeout time.Duration) error {
	var errs []error
	for _, r := range roles(stopTimeout) {
		pids := map[int]bool{}
		if pid, ok := readPidFile(dir, r.name); ok {
			pids[pid] = true
		}
		if r.name == "etcd" || r.name == "kube-apiserver" {
			for _, pid := range scan(func(p proc) bool { return r.owns(p, dir) }) {
				pids[pid] = true
			}
		}
		for pid := range pids {
			if p, ok := readProc(pid); ok && pid != os.Getpid() && r.owns(p, dir) {
				fmt.Fprintf(os.Stderr, "controlplane: stopping %s (pid %d) left by an earlier run of %s\n", r.name, pid, dir)
				errs = append(errs, stop(pid, r, dir))
			}
		}
	}
	return errors.Join(errs...)
}

// scan returns the pids of the processes that match.
func scan(match func(proc) bool) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok && match(p) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// stop sends SIGTERM to pid and SIGKILL once r's grace period has passed.
func stop(pid int, r role, dir string) error {
	gone := func() bool { p, ok := readProc(pid); return !ok || !r.owns(p, dir) }
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if waitUntil(gone, r.grace) {
		return nil
	}
	fmt.Fprintf(os.Stderr, "controlplane: %s (pid %d) still runs %s after SIGTERM; killing it\n", r.name, pid, r.grace)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitUntil(gone, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("%s (pid %d) survived SIGKILL", r.name, pid)
}

func waitUntil(cond func() bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// recordChildren writes the pid files of the etcd and kube-apiserver that
// this process started.
func recordChildren(dir string) error {
	self := strconv.Itoa(os.Getpid())
	for _, name := range []string{"etcd", "kube-apiserver"} {
		pids := scan(func(p proc) bool { return filepath.Base(p.exe) == name && parentOf(p.pid) == self })
		if len(pids) != 1 {
			return fmt.Errorf("found %d %s processes started by this control plane, want 1", len(pids), name)
		}
		if err := writePidFile(dir, name, pids[0]); err != nil {
			return err
		}
	}
	return nil
}

// parentOf returns the parent pid of pid, from /proc/<pid>/stat.
func parentOf(pid int) string {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return ""
	}
	return fields[1]
}
