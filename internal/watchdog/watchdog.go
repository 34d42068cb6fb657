package watchdog

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Kinds of watchdog, as Watchdog.Kind reports them.
const (
	// KindDevice is a Linux watchdog device (/dev/watchdog: a hardware
	// watchdog, or softdog).
	KindDevice = "device"
	// KindEmulated is the emulator of hack/watchdog-emulator, reached over a
	// unix socket.
	KindEmulated = "emulated"
	// KindNone is no watchdog: only the agent's in-process self-fence.
	KindNone = "none"
)

// DefaultDevice is the watchdog device used when none is named.
const DefaultDevice = "/dev/watchdog"

var (
	// ErrHostReset is returned when the watchdog reset the host since this
	// client started: its boot is over.
	ErrHostReset = errors.New("the watchdog reset the host since this agent started")
	// ErrLate is returned when a pet reached the watchdog after the moment
	// it was allowed to (its within): the watchdog ignored it.
	ErrLate = errors.New("the pet reached the watchdog too late and was ignored")
)

// Watchdog is a host's watchdog: once armed, it resets the host unless it is
// petted within its timeout. Implementations are safe for use by one
// goroutine at a time.
type Watchdog interface {
	// Kind is KindDevice, KindEmulated or KindNone.
	Kind() string
	// String names the watchdog as --watchdog does.
	String() string
	// Granularity is the step its timeout is set in (see PlanFor).
	Granularity() time.Duration
	// BootID is the boot of the host the watchdog knows, "" when it knows
	// none (a device: the kernel's boot ID says it).
	BootID() string
	// Arm starts the watchdog, like opening /dev/watchdog: a stopped one
	// starts with the timeout it has, a running one's timer is not restarted.
	Arm() error
	// SetTimeout sets the timeout to d rounded down to the granularity (at
	// least one granule) and restarts the timer: it is a pet, so it obeys
	// within as Pet does. It returns the timeout in force.
	SetTimeout(d, within time.Duration) (time.Duration, error)
	// Pet restarts the timer. within is how long from now the pet may take
	// to reach the watchdog; an emulated watchdog ignores a later one
	// (ErrLate), a device cannot tell, so the caller checks the time after.
	Pet(within time.Duration) error
	// Disarm stops the watchdog and releases it (the magic close: 'V', then
	// close).
	Disarm() error
	// Close releases the watchdog without disarming it: it resets the host
	// unless someone pets it within its timeout.
	Close() error
}

// Open returns the watchdog spec names: "none", "unix:PATH" (the emulator's
// socket) or the path of a device (DefaultDevice when spec is empty). A
// device is only checked here: it is opened, which starts it, by Arm.
func Open(spec string) (Watchdog, error) {
	switch {
	case spec == KindNone:
		return None{}, nil
	case strings.HasPrefix(spec, "unix:"):
		return DialEmulated(strings.TrimPrefix(spec, "unix:"), DefaultIOTimeout)
	}
	if spec == "" {
		spec = DefaultDevice
	}
	fi, err := os.Stat(spec)
	if err != nil {
		return nil, fmt.Errorf("watchdog device %s: %w (load a hardware watchdog's driver, or softdog: modprobe softdog)", spec, err)
	}
	if fi.Mode()&os.ModeCharDevice == 0 {
		return nil, fmt.Errorf("watchdog %s is not a character device (give a device, unix:PATH or none)", spec)
	}
	return OpenDevice(spec), nil
}

// OpenDevice is the watchdog device at path, not checked (Open checks that
// it is a character device); it is opened, which starts it, by Arm.
func OpenDevice(path string) *Device { return &Device{path: path} }

// None is no watchdog.
type None struct{}

// Kind implements Watchdog.
func (None) Kind() string { return KindNone }

// String implements Watchdog.
func (None) String() string { return KindNone }

// Granularity implements Watchdog.
func (None) Granularity() time.Duration { return time.Millisecond }

// BootID implements Watchdog.
func (None) BootID() string { return "" }

// Arm implements Watchdog.
func (None) Arm() error { return nil }

// SetTimeout implements Watchdog.
func (None) SetTimeout(d, _ time.Duration) (time.Duration, error) { return d, nil }

// Pet implements Watchdog.
func (None) Pet(time.Duration) error { return nil }

// Disarm implements Watchdog.
func (None) Disarm() error { return nil }

// Close implements Watchdog.
func (None) Close() error { return nil }
