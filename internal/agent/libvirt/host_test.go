package libvirt

import (
	"bufio"
	"bytes"
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
// saying why.

const uriEnv = "POOLKEEPER_TEST_LIBVIRT_URI"

var daemon struct {
	once     sync.Once
	uri, err string
	down     func()
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
	script, err := filepath.Abs("../../../hack/libvirt-host.sh")
	if err != nil {
		daemon.err = err.Error()
		return
	}
	if _, err := os.Stat(script); err != nil {
		daemon.err = fmt.Sprintf("libvirt driver tests need a libvirt daemon: %s is missing and $%s is unset", script, uriEnv)
		return
	}
	name := fmt.Sprintf("lvdrv%d", os.Getpid())
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(script, "up", name)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		daemon.err = fmt.Sprintf("%s up %s: %v\n%s%s", script, name, err, stdout.String(), stderr.String())
		return
	}
	daemon.down = func() {
		if out, err := exec.Command(script, "down", name).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "%s down %s: %v\n%s", script, name, err, out)
			return
		}
		// down keeps a host's disks for its next up; this one has none.
		_ = os.RemoveAll(filepath.Join(libvirtRoot(), name))
	}
	if v, err := os.ReadFile(filepath.Join(libvirtRoot(), name, "kvm")); err == nil {
		daemon.kvm = strings.TrimSpace(string(v))
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "LIBVIRT_URI="); ok {
			daemon.uri = v
		}
	}
	if daemon.uri == "" {
		daemon.err = fmt.Sprintf("%s up %s printed no LIBVIRT_URI= line:\n%s", script, name, stdout.String())
		return
	}
	fmt.Fprintf(os.Stderr, "libvirt test host %s up in %v: %s\n", name, time.Since(start).Round(time.Millisecond), daemon.uri)
}

// rawConn is a connection of the test's own, behind the driver's back.
func rawConn(t *testing.T, uri string) *golibvirt.Libvirt {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	c, err := golibvirt.ConnectToURI(u)
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
