package watchdog

import (
	"strings"
	"testing"
	"time"

	"github.com/poolkeeper/poolkeeper/internal/testutil/fusewatchdog"
)

// mountDevice serves a model Linux watchdog device through FUSE (the
// kernel's open, write, ioctl and release paths) for the test.
func mountDevice(t *testing.T, timeout time.Duration) *fusewatchdog.Watchdog {
	t.Helper()
	w, err := fusewatchdog.Mount(t.TempDir(), timeout)
	if err != nil {
		t.Fatalf("the device path needs a watchdog device to run against: %v", err)
	}
	t.Cleanup(func() { _ = w.Unmount() })
	return w
}

// eventually polls cond for up to 5s (a FUSE release is delivered after
// close returns).
func eventually(t *testing.T, what string, cond func(fusewatchdog.State) bool, w *fusewatchdog.Watchdog) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond(w.State()) {
			return
		}
	}
	t.Fatalf("%s: the device saw %+v", what, w.State())
}

// A Device drives the kernel's watchdog API with its real system calls:
// Arm opens (starts) it and reads its identity, SetTimeout returns the
// timeout the driver set rather than the one asked, Pet pings it, Disarm is
// the magic close that stops it, and Close leaves it running, so that the
// host is reset unless petted.
func TestDeviceDrivesTheWatchdogAPI(t *testing.T) {
	w := mountDevice(t, 60*time.Second)
	d := &Device{path: w.Path}

	if err := d.Pet(0); err == nil {
		t.Error("Pet before Arm succeeded")
	}
	if err := d.Arm(); err != nil {
		t.Fatalf("Arm: %v", err)
	}
	if s := w.State(); !s.Running || s.Opens != 1 {
		t.Fatalf("after Arm the device is %+v, want running, opened once", s)
	}
	if !strings.Contains(d.String(), fusewatchdog.Identity) {
		t.Errorf("String() = %q, want the driver's identity %q", d.String(), fusewatchdog.Identity)
	}

	got, err := d.SetTimeout(3*time.Second+900*time.Millisecond, 0)
	if err != nil {
		t.Fatalf("SetTimeout: %v", err)
	}
	if got != 4*time.Second || w.State().Timeout != 4*time.Second {
		t.Errorf("SetTimeout(3.9s) = %s, device timeout %s; want 4s: 3s asked (whole seconds, rounded down), 4s set by the driver",
			got, w.State().Timeout)
	}
	pings := w.State().Pings
	for range 3 {
		if err := d.Pet(0); err != nil {
			t.Fatalf("Pet: %v", err)
		}
	}
	if s := w.State(); s.Pings != pings+3 || len(s.Fired) != 0 {
		t.Errorf("after 3 pets the device saw %d pings (want %d), fired %v", s.Pings-pings, 3, s.Fired)
	}

	if err := d.Disarm(); err != nil {
		t.Fatalf("Disarm: %v", err)
	}
	eventually(t, "Disarm stops the watchdog with the magic close",
		func(s fusewatchdog.State) bool { return !s.Running && s.MagicCloses == 1 && s.UnexpectedCloses == 0 }, w)
	if err := d.Pet(0); err == nil {
		t.Error("Pet after Disarm succeeded")
	}

	// Armed again and closed without the magic close: it keeps running,
	// and unpetted it fires (the host is reset).
	if err := d.Arm(); err != nil {
		t.Fatalf("Arm again: %v", err)
	}
	if _, err := d.SetTimeout(time.Second, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	eventually(t, "Close leaves the watchdog running",
		func(s fusewatchdog.State) bool { return s.UnexpectedCloses == 1 && s.MagicCloses == 1 }, w)
	eventually(t, "the watchdog closed without the magic close fires unpetted",
		func(s fusewatchdog.State) bool { return len(s.Fired) == 1 && !s.Running }, w)
}
