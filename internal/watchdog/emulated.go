package watchdog

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// DefaultIOTimeout bounds each exchange with the emulator, so that a hung
// emulator never holds up the agent.
const DefaultIOTimeout = 500 * time.Millisecond

// Emulated is a client of the watchdog emulator (see the package doc for
// the protocol). It is bound to the boot the emulator had when it was
// dialed: once the emulator reset the host, every call fails with
// ErrHostReset.
type Emulated struct {
	path      string
	ioTimeout time.Duration
	boot      string
	conn      net.Conn
	r         *bufio.Reader
}

// DialEmulated connects to the emulator at socket path and learns the
// host's boot ID.
func DialEmulated(path string, ioTimeout time.Duration) (*Emulated, error) {
	if ioTimeout <= 0 {
		ioTimeout = DefaultIOTimeout
	}
	e := &Emulated{path: path, ioTimeout: ioTimeout}
	reply, err := e.call("BOOT")
	if err != nil {
		return nil, err
	}
	boot, ok := strings.CutPrefix(reply, "OK ")
	if !ok || boot == "" {
		return nil, fmt.Errorf("watchdog emulator %s: unexpected answer %q to BOOT", path, reply)
	}
	e.boot = boot
	return e, nil
}

// Kind implements Watchdog.
func (e *Emulated) Kind() string { return KindEmulated }

// String implements Watchdog.
func (e *Emulated) String() string { return "unix:" + e.path }

// Granularity implements Watchdog: milliseconds.
func (e *Emulated) Granularity() time.Duration { return time.Millisecond }

// BootID implements Watchdog: the emulated host's boot when dialed.
func (e *Emulated) BootID() string { return e.boot }

// Arm implements Watchdog.
func (e *Emulated) Arm() error {
	_, err := e.ok("ARM " + e.boot)
	return err
}

// SetTimeout implements Watchdog.
func (e *Emulated) SetTimeout(d, within time.Duration) (time.Duration, error) {
	ms := max(d.Milliseconds(), 1)
	reply, err := e.ok(fmt.Sprintf("TIMEOUT %s %d %d", e.boot, ms, untilMono(within)))
	if err != nil {
		return 0, err
	}
	got, err := strconv.ParseInt(reply, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("watchdog emulator %s: unexpected answer %q to TIMEOUT", e.path, reply)
	}
	return time.Duration(got) * time.Millisecond, nil
}

// Pet implements Watchdog.
func (e *Emulated) Pet(within time.Duration) error {
	_, err := e.ok(fmt.Sprintf("PET %s %d", e.boot, untilMono(within)))
	return err
}

// Disarm implements Watchdog.
func (e *Emulated) Disarm() error {
	_, err := e.ok("DISARM " + e.boot)
	return err
}

// Close implements Watchdog: the watchdog stays armed.
func (e *Emulated) Close() error {
	if e.conn == nil {
		return nil
	}
	err := e.conn.Close()
	e.conn, e.r = nil, nil
	return err
}

// Status is the emulator's STATUS line, for logs and tests.
func (e *Emulated) Status() (string, error) { return e.ok("STATUS") }

func untilMono(within time.Duration) int64 { return monotonicNow() + int64(within) }

// ok sends line and returns what follows "OK" in the answer, mapping RESET
// to ErrHostReset and LATE to ErrLate.
func (e *Emulated) ok(line string) (string, error) {
	reply, err := e.call(line)
	if err != nil {
		return "", err
	}
	word, rest, _ := strings.Cut(reply, " ")
	switch word {
	case "OK":
		return rest, nil
	case "RESET":
		return "", fmt.Errorf("%w: boot %s is over, the host is at boot %s", ErrHostReset, e.boot, rest)
	case "LATE":
		return "", ErrLate
	}
	return "", fmt.Errorf("watchdog emulator %s: %s", e.path, reply)
}

// call sends one line and reads the answer within the I/O timeout,
// reconnecting when the last exchange failed.
func (e *Emulated) call(line string) (string, error) {
	if e.conn == nil {
		c, err := net.DialTimeout("unix", e.path, e.ioTimeout)
		if err != nil {
			return "", fmt.Errorf("watchdog emulator %s: %w", e.path, err)
		}
		e.conn, e.r = c, bufio.NewReader(c)
	}
	fail := func(err error) (string, error) {
		_ = e.Close()
		return "", fmt.Errorf("watchdog emulator %s: %w", e.path, err)
	}
	if err := e.conn.SetDeadline(time.Now().Add(e.ioTimeout)); err != nil {
		return fail(err)
	}
	if _, err := e.conn.Write([]byte(line + "\n")); err != nil {
		return fail(err)
	}
	reply, err := e.r.ReadString('\n')
	if err != nil {
		return fail(err)
	}
	return strings.TrimSuffix(reply, "\n"), nil
}
