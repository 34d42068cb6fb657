package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Restart timing: a process that ran at least restartReset before it exited
// is started again after minRestartDelay; each quicker exit doubles the
// delay, up to maxRestartDelay (a crash loop, as the kubelet's back-off).
// A command's first run that exits within firstRunGrace ends the control
// plane instead: that is a bad flag, a build that cannot start (or --help),
// and `make run` says so at once rather than retrying it for ever.
const (
	minRestartDelay = 500 * time.Millisecond
	maxRestartDelay = 30 * time.Second
	restartReset    = time.Minute
	firstRunGrace   = 10 * time.Second
	watchEvery      = 250 * time.Millisecond
)

// backoff is the delay before the next start of a process that ran for ran.
type backoff struct{ next time.Duration }

func (b *backoff) after(ran time.Duration) time.Duration {
	if ran >= restartReset || b.next == 0 {
		b.next = minRestartDelay
		return b.next
	}
	b.next = min(2*b.next, maxRestartDelay)
	return b.next
}

// keeper keeps etcd and kube-apiserver running as a cluster's own
// supervisor (systemd, the kubelet's static pods) does: one that exits or is
// killed is started again with the command line, environment and working
// directory it ran with, so with the same data directory, certificates and
// ports, and the cluster's state and every kubeconfig survive it. envtest
// starts them once; a restarted one is this process's child, recorded in
// its pid file like the first.
type keeper struct {
	dir string

	mu       sync.Mutex
	stopping bool
	procs    map[string]*kept
}

// kept is one supervised process: how to start it again and the child
// started last (nil while envtest's own first process runs).
type kept struct {
	name string
	args []string
	env  []string
	cwd  string
	exe  string
	cmd  *exec.Cmd
	done chan struct{}
	back backoff
}

// keep records how etcd and kube-apiserver run now (recordChildren wrote
// their pid files) and watches them until ctx is done.
func keep(ctx context.Context, dir string) (*keeper, error) {
	k := &keeper{dir: dir, procs: map[string]*kept{}}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		pid, ok := readPidFile(dir, name)
		if !ok {
			return nil, fmt.Errorf("no pid file for %s", name)
		}
		p, ok := readProc(pid)
		if !ok {
			return nil, fmt.Errorf("%s (pid %d) is not running", name, pid)
		}
		env := make([]string, 0, len(p.env))
		for key, v := range p.env {
			env = append(env, key+"="+v)
		}
		k.procs[name] = &kept{name: name, args: p.args, env: env, cwd: p.cwd, exe: p.exe}
	}
	go k.watch(ctx)
	return k, nil
}

// watch starts again, after its back-off, each kept process that is gone.
func (k *keeper) watch(ctx context.Context) {
	lastStart := map[string]time.Time{}
	start := time.Now()
	for _, name := range []string{"etcd", "kube-apiserver"} {
		lastStart[name] = start
	}
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, name := range []string{"etcd", "kube-apiserver"} {
			if k.alive(name) {
				continue
			}
			kp := k.procs[name]
			ran := time.Since(lastStart[name])
			delay := kp.back.after(ran)
			fmt.Fprintf(os.Stderr, "controlplane: %s exited after %s; starting it again in %s\n", name, ran.Round(time.Millisecond), delay)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			if err := k.restart(kp); err != nil {
				fmt.Fprintf(os.Stderr, "controlplane: starting %s again: %v\n", name, err)
			}
			lastStart[name] = time.Now()
		}
	}
}

// alive says whether the process in name's pid file is still that process.
func (k *keeper) alive(name string) bool {
	pid, ok := readPidFile(k.dir, name)
	if !ok {
		return false
	}
	p, ok := readProc(pid)
	return ok && ownerOf(name)(p, k.dir)
}

// restart starts kp again and records its pid.
func (k *keeper) restart(kp *kept) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopping {
		return nil
	}
	cmd := exec.Command(kp.exe, kp.args[1:]...)
	cmd.Args[0] = kp.args[0]
	cmd.Env, cmd.Dir = kp.env, kp.cwd
	out, err := os.OpenFile(filepath.Join(k.dir, kp.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	// In a process group of its own, as envtest starts them: a Ctrl-C of
	// the terminal reaches this process, which stops them in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return err
	}
	kp.cmd, kp.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); _ = out.Close(); close(done) }(kp.done)
	fmt.Fprintf(os.Stderr, "controlplane: %s started again (pid %d, log %s)\n", kp.name, cmd.Process.Pid, out.Name())
	return writePidFile(k.dir, kp.name, cmd.Process.Pid)
}

// stop starts no more processes, and stops kube-apiserver, then etcd, by
// their pid files, the ones envtest started as well as the ones this keeper
// started again (envtest's own stop then finds its processes gone).
func (k *keeper) stop(grace time.Duration) {
	k.mu.Lock()
	k.stopping = true
	k.mu.Unlock()
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if kp := k.procs[name]; kp.cmd != nil {
			_ = kp.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-kp.done:
			case <-time.After(grace):
				_ = kp.cmd.Process.Kill()
				<-kp.done
			}
			continue
		}
		if k.alive(name) {
			pid, _ := readPidFile(k.dir, name)
			r := role{name: name, grace: grace, owns: ownerOf(name)}
			if err := stop(pid, r, k.dir); err != nil {
				fmt.Fprintf(os.Stderr, "controlplane: stopping %s: %v\n", name, err)
			}
		}
	}
}

// ownerOf is how a process of role name is recognised (see roles).
func ownerOf(name string) func(proc, string) bool {
	for _, r := range roles(0) {
		if r.name == name {
			return r.owns
		}
	}
	return func(proc, string) bool { return false }
}

// runCommand runs args with KUBECONFIG set until ctx is done, then gives it
// SIGTERM and, after timeout, SIGKILL. With restart it starts args again
// whenever it exits (a crash, a kill -9, an exit of its own), as a
// Deployment restarts its pod, with a back-off; only a first run that exits
// within firstRunGrace (of its own, not killed by a signal) ends it, with
// its exit code. Without restart
// it returns when args exits.
func runCommand(ctx context.Context, args []string, dir string, timeout time.Duration, restart bool) (int, error) {
	var back backoff
	for first := true; ; first = false {
		started := time.Now()
		code, exited, err := runOnce(ctx, args, dir, timeout)
		if !exited || !restart || err != nil {
			return code, err
		}
		ran := time.Since(started)
		if first && code < 128 && ran < firstRunGrace {
			if code == 0 {
				return 0, nil // it did what it was asked at once (--help, --version)
			}
			return code, fmt.Errorf("%s exited with status %d within %s of its start", args[0], code, ran.Round(time.Millisecond))
		}
		delay := back.after(ran)
		fmt.Fprintf(os.Stderr, "controlplane: %s exited with status %d after %s; starting it again in %s\n", args[0], code,
			ran.Round(time.Millisecond), delay)
		select {
		case <-ctx.Done():
			return 0, nil
		case <-time.After(delay):
		}
	}
}

// runOnce runs args once: until it exits (exited) or ctx is done, in which
// case it gets SIGTERM and, after timeout, SIGKILL.
func runOnce(ctx context.Context, args []string, dir string, timeout time.Duration) (code int, exited bool, err error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(dir, "kubeconfig"), dirEnv+"="+dir)
	// The command dies with us even if we are killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return 1, false, fmt.Errorf("starting %s: %w", args[0], err)
	}
	if err := writePidFile(dir, "manager", cmd.Process.Pid); err != nil {
		fmt.Fprintf(os.Stderr, "controlplane: %v\n", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return exitStatus(err), true, nil
	case <-ctx.Done():
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		return exitCode(err), false, nil
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		if err := <-done; err != nil {
			fmt.Fprintf(os.Stderr, "controlplane: %s: %v\n", args[0], err)
		}
		return 1, false, fmt.Errorf("%s did not exit within %s of SIGTERM; killed", args[0], timeout)
	}
}
