package watchdog

import (
	"errors"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// testHost is an emulated host whose "VM" is a sleep process: a reset kills
// it and starts the next one.
type testHost struct {
	mu     sync.Mutex
	vm     *exec.Cmd
	resets []string
}

func (h *testHost) boot(t *testing.T) {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	h.mu.Lock()
	h.vm = cmd
	h.mu.Unlock()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
}

func (h *testHost) alive() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.vm.ProcessState == nil && h.vm.Process.Signal(syscall.Signal(0)) == nil
}

func startEmulator(t *testing.T, h *testHost) (*Emulator, string) {
	t.Helper()
	h.boot(t)
	emu := NewEmulator("", time.Minute, func(old, next string) error {
		h.mu.Lock()
		vm := h.vm
		h.resets = append(h.resets, old+"->"+next)
		h.mu.Unlock()
		if err := vm.Process.Kill(); err != nil {
			return err
		}
		h.boot(t)
		return nil
	}, log.New(testWriter{t}, "emulator: ", log.Lmicroseconds))
	sock := filepath.Join(t.TempDir(), "watchdog.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = emu.Serve(l) }()
	t.Cleanup(func() { _ = l.Close() })
	return emu, sock
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// An armed watchdog petted in time keeps the host; once petting stops it
// resets it: the host's processes are killed, the boot ID changes, and the
// client of the old boot is told so. A client of the new boot starts afresh.
func TestEmulatorResetsWhenPettingStops(t *testing.T) {
	g := NewWithT(t)
	h := &testHost{}
	emu, sock := startEmulator(t, h)
	spec := "unix:" + sock
	w, err := Open(spec)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = w.Close() }()
	g.Expect(w.Kind()).To(Equal(KindEmulated))
	g.Expect(w.String()).To(Equal(spec))
	boot := w.BootID()
	g.Expect(boot).To(Equal(emu.Boot()))
	g.Expect(boot).To(MatchRegexp(`^[0-9a-f-]{36}$`))

	g.Expect(w.Arm()).To(Succeed())
	got, err := w.SetTimeout(300*time.Millisecond, time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(300 * time.Millisecond))
	// Petted every 100ms for a second: no reset.
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		g.Expect(w.Pet(time.Second)).To(Succeed())
	}
	g.Expect(h.alive()).To(BeTrue(), "petted in time, the host keeps running")
	g.Expect(emu.Boot()).To(Equal(boot))

	h.mu.Lock()
	old := h.vm.Process
	h.mu.Unlock()
	stopped := time.Now()
	g.Eventually(func() string { return emu.Boot() }, 2*time.Second, 5*time.Millisecond).ShouldNot(Equal(boot))
	took := time.Since(stopped)
	t.Logf("reset %s after the last pet (timeout 300ms)", took)
	g.Expect(took).To(BeNumerically(">=", 300*time.Millisecond))
	g.Expect(took).To(BeNumerically("<", time.Second))
	g.Eventually(func() error { return old.Signal(syscall.Signal(0)) }).Should(HaveOccurred(), "the old boot's process is killed")
	g.Eventually(h.alive).Should(BeTrue(), "and the next boot started")
	h.mu.Lock()
	g.Expect(h.resets).To(HaveLen(1))
	h.mu.Unlock()

	err = w.Pet(time.Second)
	g.Expect(errors.Is(err, ErrHostReset)).To(BeTrue(), "a client of the old boot is refused: %v", err)
	g.Expect(err.Error()).To(ContainSubstring(emu.Boot()), "and told the new boot")
	_, err = w.SetTimeout(time.Second, time.Second)
	g.Expect(errors.Is(err, ErrHostReset)).To(BeTrue())
	g.Expect(errors.Is(w.Disarm(), ErrHostReset)).To(BeTrue(), "nor may it disarm the new boot's watchdog")
	g.Expect(errors.Is(w.Arm(), ErrHostReset)).To(BeTrue())

	w2, err := DialEmulated(sock, 0)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = w2.Close() }()
	g.Expect(w2.BootID()).To(Equal(emu.Boot()))
	st, err := w2.Status()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(st).To(ContainSubstring("armed=0"), "a new boot starts disarmed")
	g.Expect(st).To(ContainSubstring("timeout=60000"), "with the default timeout")
	g.Expect(st).To(ContainSubstring("resets=1"))
	g.Expect(w2.Pet(time.Second)).To(MatchError(ContainSubstring("not armed")))
}

// A clean disarm stops the timer; a client gone without disarming leaves
// it armed, and the host resets unless a new client pets in time.
func TestEmulatorDisarmAndDroppedClient(t *testing.T) {
	g := NewWithT(t)
	h := &testHost{}
	emu, sock := startEmulator(t, h)

	w, err := DialEmulated(sock, 0)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(w.Arm()).To(Succeed())
	_, err = w.SetTimeout(200*time.Millisecond, time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(w.Disarm()).To(Succeed())
	g.Expect(w.Close()).To(Succeed())
	boot := emu.Boot()
	g.Consistently(emu.Boot, 600*time.Millisecond, 20*time.Millisecond).Should(Equal(boot), "disarmed: no reset")

	// Armed, then the client drops: a second client of the same boot takes
	// over in time and keeps the host.
	w, err = DialEmulated(sock, 0)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(w.Arm()).To(Succeed())
	_, err = w.SetTimeout(300*time.Millisecond, time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(w.Close()).To(Succeed())
	w2, err := DialEmulated(sock, 0)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = w2.Close() }()
	st, err := w2.Status()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(st).To(ContainSubstring("armed=1"), "a dropped client leaves the watchdog armed")
	g.Expect(w2.Arm()).To(Succeed(), "arming a running watchdog")
	for range 5 {
		time.Sleep(100 * time.Millisecond)
		g.Expect(w2.Pet(time.Second)).To(Succeed())
	}
	g.Expect(emu.Boot()).To(Equal(boot))
	g.Expect(w2.Close()).To(Succeed())
	g.Eventually(emu.Boot, 2*time.Second, 5*time.Millisecond).ShouldNot(Equal(boot), "nobody pets: the host resets")
	g.Eventually(func() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.resets) }).Should(Equal(1))
}

// A pet that reaches the emulator after its bound is ignored (a stopped
// agent resumed with a pet it decided on before it stopped).
func TestEmulatorIgnoresLatePets(t *testing.T) {
	g := NewWithT(t)
	h := &testHost{}
	emu, sock := startEmulator(t, h)
	w, err := DialEmulated(sock, 0)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = w.Close() }()
	g.Expect(w.Arm()).To(Succeed())
	_, err = w.SetTimeout(400*time.Millisecond, time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	boot := emu.Boot()
	start := time.Now()
	// "within" already over when it arrives.
	for time.Since(start) < 600*time.Millisecond {
		if err := w.Pet(-time.Millisecond); err != nil && !errors.Is(err, ErrHostReset) {
			g.Expect(err).To(MatchError(ErrLate))
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.Expect(emu.Boot()).NotTo(Equal(boot), "late pets did not keep the host")
}

// A hung emulator never blocks the client beyond its I/O timeout.
func TestEmulatedClientTimesOut(t *testing.T) {
	g := NewWithT(t)
	sock := filepath.Join(t.TempDir(), "hung.sock")
	l, err := net.Listen("unix", sock)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = l.Close() }()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer func() { _ = c.Close() }() // never answers
		}
	}()
	start := time.Now()
	_, err = DialEmulated(sock, 100*time.Millisecond)
	g.Expect(err).To(HaveOccurred())
	g.Expect(time.Since(start)).To(BeNumerically("<", time.Second))
}

func TestOpen(t *testing.T) {
	g := NewWithT(t)
	w, err := Open("none")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(w.Kind()).To(Equal(KindNone))
	_, err = Open(filepath.Join(t.TempDir(), "watchdog"))
	g.Expect(err).To(MatchError(ContainSubstring("softdog")))
	_, err = Open(os.DevNull)
	g.Expect(err).NotTo(HaveOccurred(), "a character device is taken as a watchdog device; it is opened only by Arm")
	_, err = Open("unix:" + filepath.Join(t.TempDir(), "missing.sock"))
	g.Expect(err).To(HaveOccurred())
}
