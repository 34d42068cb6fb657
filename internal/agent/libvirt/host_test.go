package libvirt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// The driver tests run against a libvirt daemon of their own, started by
// hack/libvirt-host.sh (one simulated host), or the daemon at
// $POOLKEEPER_TEST_LIBVIRT_URI when set. A missing daemon fails the tests,
// saying why. TestKVMDomain brings up a second simulated host, with KVM
// offered, and takes it down when it ends.

const uriEnv = "POOLKEEPER_TEST_LIBVIRT_URI"

var daemon struct {
	once     sync.Once
	uri, err string
	// name is the simulated host's name, empty for a daemon of
	// $POOLKEEPER_TEST_LIBVIRT_URI.
	name string
	down func()
	// kvm is the simulated host's verdict on KVM ("yes" or "no", from
	// ROOT/NAME/kvm), empty for a daemon of $POOLKEEPER_TEST_LIBVIRT_URI.
	kvm string
}

// libvirtRoot is hack/libvirt-host.sh's state root.
func libvirtRoot() string {
	if root := os.Getenv("POOLKEEPER_LIBVIRT_ROOT"); root != "" {
		return root
	}
	return "/tmp/poolkeeper-libvirt"
}

func TestMain(m *testing.M) {
	code := m.Run()
	if daemon.down != nil {
		daemon.down()
	}
	os.Exit(code)
}

// daemonURI is the test daemon's URI, starting it on first use.
func daemonURI(t *testing.T) string {
	t.Helper()
	daemon.once.Do(startDaemon)
	if daemon.err != "" {
		t.Fatal(daemon.err)
	}
	return daemon.uri
}

func startDaemon() {
	if uri := os.Getenv(uriEnv); uri != "" {
		daemon.uri = uri
		return
	}
	h, err := upHost(fmt.Sprintf("lvdrv%d", os.Getpid()))
	if err != nil {
		daemon.err = err.Error()
		return
	}
	daemon.name, daemon.uri, daemon.kvm, daemon.down = h.name, h.uri, h.kvm, h.down
}

// simHost is a simulated host of hack/libvirt-host.sh this test binary
// brought up.
type simHost struct {
	name, uri string
	// kvm is the host's verdict on KVM: "yes" or "no" (ROOT/NAME/kvm).
	kvm string
	// down powers the host off and removes its files.
	down func()
}

// hostScript is hack/libvirt-host.sh, or why it cannot be run.
func hostScript() (string, error) {
	script, err := filepath.Abs("../../../hack/libvirt-host.sh")
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("libvirt driver tests need a libvirt daemon: %s is missing and $%s is unset", script, uriEnv)
	}
	return script, nil
}

// upHost brings simulated host name up, with env added to the script's
// environment (e.g. POOLKEEPER_LIBVIRT_KVM=yes).
func upHost(name string, env ...string) (simHost, error) {
	script, err := hostScript()
	if err != nil {
		return simHost{}, err
	}
	h := simHost{name: name, down: func() {
		if out, err := exec.Command(script, "down", name).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "%s down %s: %v\n%s", script, name, err, out)
			return
		}
		// down keeps a host's disks for its next up; this one has none.
		_ = os.RemoveAll(filepath.Join(libvirtRoot(), name))
	}}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(script, "up", name)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	if err := cmd.Run(); err != nil {
		h.down() // what up left running
		return simHost{}, fmt.Errorf("%s up %s: %v\n%s%s", script, name, err, stdout.String(), stderr.String())
	}
	if v, err := os.ReadFile(filepath.Join(libvirtRoot(), name, "kvm")); err == nil {
		h.kvm = strings.TrimSpace(string(v))
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "LIBVIRT_URI="); ok {
			h.uri = v
		}
	}
	if h.uri == "" {
		h.down()
		return simHost{}, fmt.Errorf("%s up %s printed no LIBVIRT_URI= line:\n%s", script, name, stdout.String())
	}
	fmt.Fprintf(os.Stderr, "libvirt test host %s up in %v: %s\n", name, time.Since(start).Round(time.Millisecond), h.uri)
	return h, nil
}

// daemonDied says whether err, from a call on a connection to the test
// daemon, is that connection lost.
func daemonDied(err error) bool {
	return errors.Is(lost(err), ErrDisconnected)
}

// reviveDaemon is for a test daemon that died under a test: libvirtd
// crashed or was killed, which the driver does not cause and cannot
// prevent (it only reconnects). It logs what the simulated host's logs
// say about the death and brings the host up again, for the tests after
// this one.
func reviveDaemon(t *testing.T) {
	t.Helper()
	t.Logf("the test daemon died under this test; what its host's logs say:\n%s", hostDiagnosis())
	if daemon.name == "" {
		t.Fatalf("the daemon at $%s is gone", uriEnv)
	}
	script, err := hostScript()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(script, "down", daemon.name).CombinedOutput(); err != nil {
		t.Fatalf("%s down %s: %v\n%s", script, daemon.name, err, out)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(script, "up", daemon.name)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s up %s: %v\n%s", script, daemon.name, err, stderr.String())
	}
	t.Logf("test host %s up again", daemon.name)
}

// hostDiagnosis is the tail of the simulated host's logs: its boots and how
// the daemon exited (the emulator's log), and the daemon's last errors.
func hostDiagnosis() string {
	if daemon.name == "" {
		return "(a daemon of $" + uriEnv + ": no logs here)"
	}
	dir := filepath.Join(libvirtRoot(), daemon.name)
	var b strings.Builder
	for _, f := range []struct {
		path, only string
		n          int
	}{
		{"watchdog.log", "", 10},
		{"boot.log", "", 10},
		{"emulator.log", "", 10},
		{"log/libvirtd.log", " error : ", 15},
	} {
		data, err := os.ReadFile(filepath.Join(dir, f.path))
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", f.path, err)
			continue
		}
		var lines []string
		for l := range strings.Lines(string(data)) {
			if f.only == "" || strings.Contains(l, f.only) {
				lines = append(lines, l)
			}
		}
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s", f.path, f.n, strings.Join(lines[max(0, len(lines)-f.n):], ""))
	}
	return b.String()
}

func dial(uri string) (*golibvirt.Libvirt, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, err
	}
	return golibvirt.ConnectToURI(u)
}

// rawConn is a connection of the test's own, behind the driver's back.
func rawConn(t *testing.T, uri string) *golibvirt.Libvirt {
	t.Helper()
	c, err := dial(uri)
	if err != nil {
		t.Fatalf("connecting to %s: %v", uri, err)
	}
	t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

// socketOf is the daemon socket a URI dials.
func socketOf(t *testing.T, uri string) string {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	if s := u.Query().Get("socket"); s != "" {
		return s
	}
	return "/var/run/libvirt/libvirt-sock"
}

// withSocket is uri dialling socket instead.
func withSocket(t *testing.T, uri, socket string) string {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(u.Scheme, "+") {
		u.Scheme += "+unix"
	}
	q := u.Query()
	q.Set("socket", socket)
	u.RawQuery = q.Encode()
	return u.String()
}
