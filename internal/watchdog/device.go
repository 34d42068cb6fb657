package watchdog

import (
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Device is a Linux watchdog device (the kernel's watchdog API:
// WDIOC_KEEPALIVE, WDIOC_SETTIMEOUT, the magic close). Its timeout is whole
// seconds. Linux restarts its timer once more when the file is closed
// without the magic close, and opening a running one does not restart it.
//
// It talks to the kernel through golang.org/x/sys/unix rather than
// github.com/mdlayher/watchdog, which opens only /dev/watchdog, cannot set
// the timeout, and always disarms on Close (the agent must be able to leave
// the watchdog armed).
type Device struct {
	path     string
	f        *os.File
	identity string
}

// Kind implements Watchdog.
func (d *Device) Kind() string { return KindDevice }

// String implements Watchdog: the device's path and, once armed, its driver.
func (d *Device) String() string {
	if d.identity != "" {
		return d.path + " (" + d.identity + ")"
	}
	return d.path
}

// Granularity implements Watchdog: whole seconds.
func (d *Device) Granularity() time.Duration { return time.Second }

// BootID implements Watchdog: a device knows no boot ID.
func (d *Device) BootID() string { return "" }

// Arm implements Watchdog: it opens the device.
func (d *Device) Arm() error {
	if d.f != nil {
		return nil
	}
	f, err := os.OpenFile(d.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening watchdog %s: %w", d.path, err)
	}
	d.f = f
	if info, err := unix.IoctlGetWatchdogInfo(int(f.Fd())); err == nil {
		d.identity = strings.TrimRight(string(info.Identity[:]), "\x00")
	}
	return nil
}

// SetTimeout implements Watchdog: WDIOC_SETTIMEOUT in whole seconds (at
// least 1), which restarts the timer; the driver may adjust the value, so
// the one read back is returned.
func (d *Device) SetTimeout(timeout, _ time.Duration) (time.Duration, error) {
	if d.f == nil {
		return 0, fmt.Errorf("watchdog %s is not armed", d.path)
	}
	secs := max(int(timeout/time.Second), 1)
	if err := unix.IoctlSetPointerInt(int(d.f.Fd()), unix.WDIOC_SETTIMEOUT, secs); err != nil {
		return 0, fmt.Errorf("setting watchdog %s timeout to %ds: %w", d.path, secs, err)
	}
	got, err := unix.IoctlGetInt(int(d.f.Fd()), unix.WDIOC_GETTIMEOUT)
	if err != nil {
		return 0, fmt.Errorf("reading watchdog %s timeout: %w", d.path, err)
	}
	return time.Duration(got) * time.Second, nil
}

// Pet implements Watchdog: WDIOC_KEEPALIVE. Its argument is declared an
// int the driver writes (_IOR), so a valid pointer is passed: the watchdog
// core ignores it, but a device that honours the declaration (one served
// through FUSE, whose kernel side copies it out) would fail on NULL.
func (d *Device) Pet(time.Duration) error {
	if d.f == nil {
		return fmt.Errorf("watchdog %s is not armed", d.path)
	}
	if err := unix.IoctlSetPointerInt(int(d.f.Fd()), unix.WDIOC_KEEPALIVE, 0); err != nil {
		return fmt.Errorf("petting watchdog %s: %w", d.path, err)
	}
	return nil
}

// Disarm implements Watchdog: the magic close.
func (d *Device) Disarm() error {
	if d.f == nil {
		return nil
	}
	f := d.f
	d.f = nil
	if _, err := f.Write([]byte("V")); err != nil {
		_ = f.Close()
		return fmt.Errorf("disarming watchdog %s: %w", d.path, err)
	}
	return f.Close()
}

// Close implements Watchdog: close without the magic 'V'; the watchdog stays
// armed (and Linux restarts its timer once).
func (d *Device) Close() error {
	if d.f == nil {
		return nil
	}
	f := d.f
	d.f = nil
	return f.Close()
}
