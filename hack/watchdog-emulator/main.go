// Command watchdog-emulator is the emulated watchdog of one host simulated on
// this machine (hack/libvirt-host.sh starts one per host). It is the host's
// "machine": it starts the host's boot (a command run in private mount and
// network namespaces: the host's libvirt daemons), answers the agent's
// watchdog client on a unix socket (the protocol is in the doc of
// internal/watchdog), and when the agent stops petting it resets the host:
// it SIGKILLs every process of that boot, its QEMU processes first, found by
// their mount namespace (so a hung or stopped libvirtd does not matter), and
// starts the next boot with a new boot ID. Resets are logged to --log.
//
//	watchdog-emulator serve --dir DIR [--socket PATH] [--log PATH] [--default-timeout 60s] -- BOOT-COMMAND...
//	watchdog-emulator kill --dir DIR        (kill every process of the host: a power cut)
//	watchdog-emulator ctl --socket PATH LINE (send one protocol line, print the answer)
//
// DIR holds boot_id (the current boot), mntns (the boot's mount namespace)
// and, by default, watchdog.sock and watchdog.log. It must run as root.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/poolkeeper/poolkeeper/internal/watchdog"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "kill":
		err = killCmd(os.Args[2:])
	case "ctl":
		err = ctl(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "watchdog-emulator:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  watchdog-emulator serve --dir DIR [--socket PATH] [--log PATH] [--default-timeout 60s] -- BOOT-COMMAND...
  watchdog-emulator kill --dir DIR
  watchdog-emulator ctl --socket PATH LINE...`)
	os.Exit(2)
}

// host is the emulated machine: its boots and their processes.
type host struct {
	dir  string
	boot []string
	log  *log.Logger

	mu sync.Mutex
	// ns is the current boot's mount namespace ("mnt:[inode]"), pinned by
	// nsFile so that its inode is not reused while the emulator runs.
	ns     string
	nsFile *os.File
	pid    int
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	dir := fs.String("dir", "", "the host's state directory (required)")
	sock := fs.String("socket", "", "the watchdog socket (default DIR/watchdog.sock)")
	logPath := fs.String("log", "", "the log of boots and resets (default DIR/watchdog.log)")
	defTimeout := fs.Duration("default-timeout", 60*time.Second, "the timeout of a watchdog no client has set one for")
	_ = fs.Parse(args)
	if *dir == "" || fs.NArg() == 0 {
		return errors.New("serve needs --dir and a boot command after --")
	}
	if *sock == "" {
		*sock = filepath.Join(*dir, "watchdog.sock")
	}
	if *logPath == "" {
		*logPath = filepath.Join(*dir, "watchdog.log")
	}
	lf, err := os.OpenFile(*logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	logger := log.New(lf, "", log.LstdFlags|log.Lmicroseconds)
	// Orphans of the host (QEMU, daemonized by libvirtd) become our children,
	// so that we reap them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("becoming a subreaper: %w", err)
	}
	h := &host{dir: *dir, boot: fs.Args(), log: logger}
	go h.reap()
	// A power cut may have left processes of an earlier emulator behind.
	if n := killHost(*dir, readNS(*dir), logger); n > 0 {
		logger.Printf("killed %d processes left by an earlier run", n)
	}
	emu := watchdog.NewEmulator("", *defTimeout, func(old, next string) error {
		return h.reset(old, next)
	}, logger)
	if err := h.start(emu.Boot()); err != nil {
		return err
	}
	_ = os.Remove(*sock)
	l, err := net.Listen("unix", *sock)
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		logger.Printf("%s: powering the host off", s)
		_ = l.Close() // Serve returns; the host is killed below
	}()
	logger.Printf("watchdog listening on %s (default timeout %s)", *sock, *defTimeout)
	err = emu.Serve(l)
	h.mu.Lock()
	n := killHost(h.dir, h.ns, logger)
	h.mu.Unlock()
	h.reapAll(time.Second)
	_ = os.Remove(*sock)
	logger.Printf("killed %d processes; exiting", n)
	return err
}

// start starts boot id: the boot command in new mount and network
// namespaces.
func (h *host) start(id string) error {
	if err := os.WriteFile(filepath.Join(h.dir, "boot_id"), []byte(id+"\n"), 0o644); err != nil {
		return err
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer func() { _ = null.Close() }()
	out, err := os.OpenFile(filepath.Join(h.dir, "boot.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = out.Close() }()
	_, _ = fmt.Fprintf(out, "--- boot %s at %s\n", id, time.Now().Format(time.RFC3339Nano))
	env := append(os.Environ(), "POOLKEEPER_BOOT_ID="+id)
	p, err := os.StartProcess(h.boot[0], h.boot, &os.ProcAttr{
		Env:   env,
		Files: []*os.File{null, out, out},
		Sys: &syscall.SysProcAttr{
			Setpgid:      true,
			Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET,
		},
	})
	if err != nil {
		return fmt.Errorf("starting boot %s: %w", id, err)
	}
	nsPath := fmt.Sprintf("/proc/%d/ns/mnt", p.Pid)
	ns, err := os.Readlink(nsPath)
	if err != nil {
		return fmt.Errorf("reading boot %s's mount namespace: %w", id, err)
	}
	f, err := os.Open(nsPath)
	if err != nil {
		return fmt.Errorf("pinning boot %s's mount namespace: %w", id, err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, "mntns"), []byte(ns+"\n"), 0o644); err != nil {
		return err
	}
	h.mu.Lock()
	if h.nsFile != nil {
		_ = h.nsFile.Close()
	}
	h.ns, h.nsFile, h.pid = ns, f, p.Pid
	h.mu.Unlock()
	h.log.Printf("boot %s started: pid %d, %s", id, p.Pid, ns)
	return nil
}

// reset kills every process of boot old and starts boot next.
func (h *host) reset(old, next string) error {
	h.mu.Lock()
	ns := h.ns
	h.mu.Unlock()
	start := time.Now()
	n := killHost(h.dir, ns, h.log)
	h.log.Printf("boot %s: %d processes killed in %s", old, n, time.Since(start).Round(time.Microsecond))
	return h.start(next)
}

// reap reaps our children and the host's orphans.
func (h *host) reap() {
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGCHLD)
	for {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
			h.mu.Lock()
			if pid == h.pid {
				h.log.Printf("the boot command (pid %d) exited: %v", pid, status(ws))
			}
			h.mu.Unlock()
		}
		select {
		case <-sig:
		case <-time.After(time.Second):
		}
	}
}

// reapAll reaps the host's dead processes for up to d, until none is left.
func (h *host) reapAll(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.ECHILD) {
			return
		}
		if pid <= 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func status(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by signal " + strconv.Itoa(int(ws.Signal()))
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}

// readNS is the mount namespace DIR/mntns names, "" when none.
func readNS(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "mntns"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// hostProcs lists the processes in mount namespace ns that mount something
// of dir (so that a reused namespace inode never names someone else's),
// QEMU processes first.
func hostProcs(dir, ns string) []int {
	if ns == "" {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var qemu, rest []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err != nil || l != ns {
			continue
		}
		if mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid)); err != nil || !strings.Contains(string(mi), dir) {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.HasPrefix(string(comm), "qemu") {
			qemu = append(qemu, pid)
		} else {
			rest = append(rest, pid)
		}
	}
	return append(qemu, rest...)
}

// killHost SIGKILLs every process of the host in ns, QEMU first, and waits
// (up to 10s) until none is left. It returns how many it killed.
func killHost(dir, ns string, logger *log.Logger) int {
	dir = filepath.Clean(dir)
	killed := map[int]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := hostProcs(dir, ns)
		if len(procs) == 0 {
			return len(killed)
		}
		if time.Now().After(deadline) {
			logger.Printf("processes %v of %s survived SIGKILL for 10s", procs, ns)
			return len(killed)
		}
		for _, pid := range procs {
			if !killed[pid] {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				logger.Printf("SIGKILL pid %d (%s)", pid, strings.TrimSpace(string(comm)))
			}
			_ = unix.Kill(pid, unix.SIGKILL)
			killed[pid] = true
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func killCmd(args []string) error {
	fs := flag.NewFlagSet("kill", flag.ExitOnError)
	dir := fs.String("dir", "", "the host's state directory (required)")
	_ = fs.Parse(args)
	if *dir == "" {
		return errors.New("kill needs --dir")
	}
	n := killHost(*dir, readNS(*dir), log.New(os.Stderr, "", 0))
	fmt.Fprintf(os.Stderr, "killed %d processes of %s\n", n, *dir)
	return nil
}

func ctl(args []string) error {
	fs := flag.NewFlagSet("ctl", flag.ExitOnError)
	sock := fs.String("socket", "", "the watchdog socket (required)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	_ = fs.Parse(args)
	if *sock == "" || fs.NArg() == 0 {
		return errors.New("ctl needs --socket and a line")
	}
	c, err := net.DialTimeout("unix", *sock, *timeout)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(*timeout))
	if _, err := fmt.Fprintln(c, strings.Join(fs.Args(), " ")); err != nil {
		return err
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	fmt.Print(reply)
	if !strings.HasPrefix(reply, "OK") {
		os.Exit(1)
	}
	return nil
}
