package watchdog

import (
	"bufio"
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

// Emulator is the server side of an emulated watchdog for one host.
type Emulator struct {
	// DefaultTimeout is the timeout of a watchdog no TIMEOUT has set (60s
	// when zero, like softdog's).
	DefaultTimeout time.Duration
	// Reset kills every process of boot old (the host's VMs first) and starts
	// boot next. It runs with no pet accepted for old.
	Reset func(old, next string) error
	// Log receives one line per arm, timeout change, disarm and reset.
	Log *log.Logger

	resetMu sync.Mutex
	mu      sync.Mutex
	boot    string
	armed   bool
	timeout time.Duration
	lastPet time.Time
	expires time.Time
	timer   *time.Timer
	resets  int
	// gen counts timer restarts, so a timer that fired after a restart does
	// nothing.
	gen uint64
}

// NewEmulator returns an emulator whose host is at boot (a new UUID when
// empty).
func NewEmulator(boot string, defaultTimeout time.Duration, reset func(old, next string) error, logger *log.Logger) *Emulator {
	if boot == "" {
		boot = uuid.NewString()
	}
	if defaultTimeout <= 0 {
		defaultTimeout = 60 * time.Second
	}
	if logger == nil {
		logger = log.New(discard{}, "", 0)
	}
	return &Emulator{DefaultTimeout: defaultTimeout, Reset: reset, Log: logger, boot: boot, timeout: defaultTimeout}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Boot is the host's current boot ID.
func (e *Emulator) Boot() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.boot
}

// Serve answers clients on l until it is closed.
func (e *Emulator) Serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go e.serveConn(c)
	}
}

func (e *Emulator) serveConn(c net.Conn) {
	defer func() { _ = c.Close() }()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if _, err := fmt.Fprintln(c, e.Handle(sc.Text())); err != nil {
			return
		}
	}
}

// Handle answers one protocol line.
func (e *Emulator) Handle(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return "ERR empty line"
	}
	recv := monotonicNow()
	e.mu.Lock()
	defer e.mu.Unlock()
	cmd, args := strings.ToUpper(f[0]), f[1:]
	switch cmd {
	case "BOOT":
		return "OK " + e.boot
	case "POWERCYCLE":
		next := e.resetLocked("power cycled")
		return "OK " + next
	case "STATUS":
		left := time.Duration(0)
		if e.armed {
			left = max(time.Until(e.expires), 0)
		}
		return fmt.Sprintf("OK boot=%s armed=%d timeout=%d left=%d resets=%d",
			e.boot, b2i(e.armed), e.timeout.Milliseconds(), left.Milliseconds(), e.resets)
	}
	if len(args) == 0 {
		return "ERR " + cmd + " needs the boot ID"
	}
	if args[0] != e.boot {
		return "RESET " + e.boot
	}
	return e.handleBoot(cmd, args[1:], recv)
}

// handleBoot answers a command that names the current boot; e.mu is held.
func (e *Emulator) handleBoot(cmd string, args []string, recv int64) string {
	switch cmd {
	case "ARM":
		if !e.armed {
			e.armed = true
			e.restart()
			e.Log.Printf("boot %s: armed with timeout %s", e.boot, e.timeout)
		}
		return fmt.Sprintf("OK %d", e.timeout.Milliseconds())
	case "TIMEOUT":
		if len(args) == 0 {
			return "ERR TIMEOUT needs a timeout in milliseconds"
		}
		ms, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil || ms <= 0 {
			return "ERR bad timeout " + strconv.Quote(args[0])
		}
		if late(args[1:], recv) {
			return "LATE"
		}
		if d := time.Duration(ms) * time.Millisecond; d != e.timeout {
			e.Log.Printf("boot %s: timeout %s (was %s)", e.boot, d, e.timeout)
			e.timeout = d
		}
		if e.armed {
			e.restart()
		}
		return fmt.Sprintf("OK %d", e.timeout.Milliseconds())
	case "PET":
		if !e.armed {
			return "ERR not armed"
		}
		if late(args, recv) {
			return "LATE"
		}
		e.restart()
		return "OK"
	case "DISARM":
		if e.armed {
			e.armed = false
			e.gen++
			e.timer.Stop()
			e.Log.Printf("boot %s: disarmed", e.boot)
		}
		return "OK"
	}
	return "ERR unknown command " + strconv.Quote(cmd)
}

// late reports whether a pet received at recv (CLOCK_MONOTONIC ns) comes
// after the <until> in args.
func late(args []string, recv int64) bool {
	if len(args) == 0 {
		return false
	}
	until, err := strconv.ParseInt(args[0], 10, 64)
	return err == nil && recv > until
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// restart restarts the timer; e.mu is held.
func (e *Emulator) restart() {
	e.gen++
	gen := e.gen
	e.lastPet = time.Now()
	e.expires = e.lastPet.Add(e.timeout)
	if e.timer != nil {
		e.timer.Stop()
	}
	e.timer = time.AfterFunc(e.timeout, func() { e.expire(gen) })
}

// expire resets the host when timer generation gen is still the current one.
func (e *Emulator) expire(gen uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if gen != e.gen || !e.armed {
		return
	}
	e.resetLocked(fmt.Sprintf("no pet for %s (timeout %s, last pet %s)",
		time.Since(e.lastPet).Round(time.Millisecond), e.timeout, e.lastPet.Format(time.RFC3339Nano)))
}

// resetLocked starts a reset of the host for why and returns the next
// boot; e.mu is held. The old boot's processes are killed and the next boot
// started by e.Reset, in the background: meanwhile every line naming the
// old boot is answered RESET.
func (e *Emulator) resetLocked(why string) string {
	old, next := e.boot, uuid.NewString()
	e.boot, e.armed, e.timeout = next, false, e.DefaultTimeout
	e.gen++
	if e.timer != nil {
		e.timer.Stop()
	}
	e.resets++
	e.Log.Printf("boot %s: %s: resetting the host", old, why)
	go e.reset(old, next, time.Now())
	return next
}

func (e *Emulator) reset(old, next string, expired time.Time) {
	e.resetMu.Lock() // one reset at a time
	defer e.resetMu.Unlock()
	var err error
	if e.Reset != nil {
		err = e.Reset(old, next)
	}
	if err != nil {
		e.Log.Printf("boot %s: reset failed after %s: %v", old, time.Since(expired).Round(time.Millisecond), err)
		return
	}
	e.Log.Printf("boot %s: reset done in %s; boot %s started", old, time.Since(expired).Round(time.Millisecond), next)
}

func monotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}
