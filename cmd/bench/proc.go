package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (`getconf CLK_TCK`): 100 on Linux on every common architecture, whatever
// the kernel's CONFIG_HZ.
const clockTicks = 100

// managerProc is the manager running as a child process.
type managerProc struct {
	cmd  *exec.Cmd
	log  *os.File // its stdout and stderr, kept after the run
	done chan struct{}
	err  error // Wait's result, set before done is closed
}

func startManager(path, kubeconfig string) (*managerProc, error) {
	log, err := os.CreateTemp("", "poolkeeper-bench-manager-*.log")
	if err != nil {
		return nil, fmt.Errorf("creating the manager's log file: %w", err)
	}
	cmd := exec.Command(path, "--metrics-bind-address=0", "--metrics-secure=false", "--health-probe-bind-address=0",
		"--leader-elect=false", "--zap-log-level="+cmp.Or(os.Getenv("POOLKEEPER_BENCH_LOG_LEVEL"), "error"), "--zap-time-encoding=rfc3339nano")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group keeps a terminal's Ctrl-C from it, so that we stop
	// it before the control plane; Pdeathsig kills it should we die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, fmt.Errorf("starting the manager %s: %w", path, err)
	}
	m := &managerProc{cmd: cmd, log: log, done: make(chan struct{})}
	go func() { m.err = cmd.Wait(); close(m.done) }()
	return m, nil
}

// exited returns an error once the manager is no longer running.
func (m *managerProc) exited() error {
	select {
	case <-m.done:
		return fmt.Errorf("the manager exited unexpectedly: %w", cmp.Or(m.err, errors.New("exit status 0")))
	default:
		return nil
	}
}

// stop sends SIGTERM, and SIGKILL after 10s, then reports the errors it logged.
func (m *managerProc) stop() error {
	err := m.exited()
	if err == nil {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.done
		}
	}
	_ = m.log.Close()
	if b, rerr := os.ReadFile(m.log.Name()); rerr == nil {
		progress("manager log: %s (%d lines at level error)", m.log.Name(), bytes.Count(b, []byte(`"level":"error"`)))
	}
	return err
}

func (m *managerProc) proc(file string) ([]byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", m.cmd.Process.Pid, file))
	if err != nil {
		return nil, fmt.Errorf("reading the manager's /proc entry: %w", err)
	}
	return b, nil
}

// cpu is the manager's CPU time so far: utime+stime of all its threads.
func (m *managerProc) cpu() (time.Duration, error) {
	b, err := m.proc("stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces. After
	// it come fields 3, 4, …: utime (14) and stime (15) are f[11] and f[12].
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/<pid>/stat: %q", b)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/<pid>/stat: %q", b)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// memory is the manager's resident set size now and at its peak (VmRSS and
// VmHWM), in bytes.
func (m *managerProc) memory() (rss, hwm uint64, err error) {
	b, err := m.proc("status")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		key, value, _ := strings.Cut(line, ":")
		kb, perr := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		switch {
		case key == "VmRSS" && perr == nil:
			rss = kb << 10
		case key == "VmHWM" && perr == nil:
			hwm = kb << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("no VmRSS or VmHWM in /proc/<pid>/status:\n%s", b)
	}
	return rss, hwm, nil
}
