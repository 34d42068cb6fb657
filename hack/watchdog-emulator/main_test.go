package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// needRoot fails under CI and skips, saying why, elsewhere: the emulator
// runs each boot in new mount and network namespaces.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	t.Fatal("the watchdog emulator needs root (it runs each boot in new mount and network namespaces); run the tests as root")
}

func send(t *testing.T, sock, line string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintln(c, line); err != nil {
		t.Fatal(err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(reply)
}

// bootPids lists the processes of the host's current boot: those in the
// mount namespace DIR/mntns names.
func bootPids(dir string) []int {
	return hostProcs(filepath.Clean(dir), readNS(dir))
}

// The emulator binary: a boot runs in its own mount namespace; when the
// agent stops petting, every process of that boot is SIGKILLed, a new boot
// with a new boot ID starts, the old boot's client is told RESET, and the
// reset is in the log. SIGTERM powers the host off.
func TestEmulatorBinary(t *testing.T) {
	needRoot(t)
	g := NewWithT(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "watchdog-emulator")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	g.Expect(build.Run()).To(Succeed())
	// The boot mounts something of dir, as the libvirt host's boot does,
	// and leaves a daemonized child behind (like QEMU under libvirtd).
	script := fmt.Sprintf("mkdir -p %[1]s/m && mount -t tmpfs tmpfs %[1]s/m && (setsid sleep 300 &) && exec sleep 300", dir)
	emu := exec.Command(bin, "serve", "--dir", dir, "--default-timeout", "10s", "--", "/bin/sh", "-c", script)
	emu.Stderr = os.Stderr
	g.Expect(emu.Start()).To(Succeed())
	defer func() { _ = emu.Process.Kill() }()
	sock := filepath.Join(dir, "watchdog.sock")
	g.Eventually(func() error { _, err := os.Stat(sock); return err }, 5*time.Second).Should(Succeed())
	g.Eventually(func() []int { return bootPids(dir) }, 5*time.Second, 10*time.Millisecond).Should(HaveLen(2))
	first := bootPids(dir)

	boot := strings.TrimPrefix(send(t, sock, "BOOT"), "OK ")
	fileBoot, err := os.ReadFile(filepath.Join(dir, "boot_id"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(strings.TrimSpace(string(fileBoot))).To(Equal(boot))
	g.Expect(send(t, sock, "ARM "+boot)).To(Equal("OK 10000"))
	g.Expect(send(t, sock, "TIMEOUT "+boot+" 500")).To(Equal("OK 500"))
	for range 6 {
		time.Sleep(150 * time.Millisecond)
		g.Expect(send(t, sock, "PET "+boot)).To(Equal("OK"))
	}
	g.Expect(bootPids(dir)).To(ConsistOf(first), "petted: the boot goes on")

	lastPet := time.Now()
	g.Eventually(func() bool {
		for _, pid := range first {
			if syscall.Kill(pid, 0) == nil && !zombie(pid) {
				return false
			}
		}
		return true
	}, 3*time.Second, 5*time.Millisecond).Should(BeTrue(), "every process of the old boot is killed")
	t.Logf("old boot's processes gone %s after the last pet (timeout 500ms)", time.Since(lastPet))
	g.Expect(send(t, sock, "PET "+boot)).To(HavePrefix("RESET "), "the old boot's client is told the host was reset")
	next := strings.TrimPrefix(send(t, sock, "BOOT"), "OK ")
	g.Expect(next).NotTo(Equal(boot))
	g.Eventually(func() []int { return bootPids(dir) }, 5*time.Second, 10*time.Millisecond).Should(HaveLen(2), "the next boot runs")
	g.Expect(bootPids(dir)).NotTo(ContainElements(first))
	// (The next boot's processes can run before the emulator logs its start.)
	g.Eventually(func(g Gomega) {
		logText, err := os.ReadFile(filepath.Join(dir, "watchdog.log"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(logText)).To(ContainSubstring("boot " + boot + ": no pet for"))
		g.Expect(string(logText)).To(ContainSubstring("boot " + next + " started"))
	}, 5*time.Second, 10*time.Millisecond).Should(Succeed())

	second := bootPids(dir)
	g.Expect(emu.Process.Signal(syscall.SIGTERM)).To(Succeed())
	g.Expect(emu.Wait()).To(Succeed())
	for _, pid := range second {
		g.Expect(syscall.Kill(pid, 0) != nil || zombie(pid)).To(BeTrue(), "pid %d survived the power-off", pid)
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}
