// Package fusewatchdog serves, for tests, a Linux watchdog device through
// FUSE: a file whose open, write, ioctl and release go through the kernel's
// own system call paths to a model of the kernel's watchdog core
// (drivers/watchdog/watchdog_dev.c), so that a client of /dev/watchdog
// (watchdog.Device) is tested with its real system calls where no hardware
// watchdog or softdog is loaded.
//
// The model follows the watchdog API (Documentation/watchdog/watchdog-api.rst):
// opening starts a stopped watchdog with its timeout (a running one goes on
// without a restart); any write, WDIOC_KEEPALIVE and WDIOC_SETTIMEOUT ping
// it; a write containing 'V' arms the magic close and any later write
// without one disarms it again; a release after the magic close stops the
// watchdog, any other release leaves it running and pings it once (the
// kernel's "watchdog did not stop!"); unpetted for its timeout it fires (a
// reset, recorded). WDIOC_SETTIMEOUT rounds the timeout up to an even number
// of seconds, as some drivers adjust it, so a client must use the value
// WDIOC_GETTIMEOUT reads back.
//
// Mounting needs root and /dev/fuse (the fuse module): FUSE mounts directly,
// without fusermount.
package fusewatchdog

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Identity is what WDIOC_GETSUPPORT reports.
const Identity = "poolkeeper fuse watchdog"

// State is what the model saw, for assertions.
type State struct {
	// Running is true while the watchdog is started (armed).
	Running bool
	// Timeout is the timeout in force.
	Timeout time.Duration
	// Opens, Pings, MagicCloses and UnexpectedCloses count what clients did:
	// a ping is a write, WDIOC_KEEPALIVE or WDIOC_SETTIMEOUT; a magic close
	// is a release after a 'V', which stopped the watchdog; an unexpected
	// close left it running.
	Opens, Pings, MagicCloses, UnexpectedCloses int
	// LastPet is the last ping; LastRestart the last restart of the timer
	// (a ping, the open that started it, or an unexpected close).
	LastPet, LastRestart time.Time
	// Fired holds when the watchdog fired (it reset the host); it is then
	// stopped.
	Fired []time.Time
}

// Watchdog is a mounted model watchdog device.
type Watchdog struct {
	// Path is the device file's path.
	Path string

	server *fuse.Server
	mu     sync.Mutex
	state  State
	timer  *time.Timer
}

// Mount serves a watchdog device at DIR/watchdog, DIR a new directory under
// parent, with the timeout it starts with. Unmount it when done.
func Mount(parent string, timeout time.Duration) (*Watchdog, error) {
	if _, err := os.Stat("/dev/fuse"); os.IsNotExist(err) {
		// The fuse module is there but no node for it (a container's /dev).
		if err := unix.Mknod("/dev/fuse", unix.S_IFCHR|0o666, int(unix.Mkdev(10, 229))); err != nil {
			return nil, fmt.Errorf("no /dev/fuse, and creating it failed: %w", err)
		}
	}
	dir, err := os.MkdirTemp(parent, "fusewatchdog")
	if err != nil {
		return nil, err
	}
	w := &Watchdog{Path: filepath.Join(dir, "watchdog")}
	w.state.Timeout = timeout
	root := &root{w: w}
	w.server, err = fs.Mount(dir, root, &fs.Options{MountOptions: fuse.MountOptions{
		FsName: "fusewatchdog", Name: "fusewatchdog", DirectMount: true, DirectMountStrict: true}})
	if err != nil {
		return nil, fmt.Errorf("mounting the FUSE watchdog at %s (needs root and /dev/fuse): %w", dir, err)
	}
	return w, nil
}

// Unmount stops serving the device, and its timer.
func (w *Watchdog) Unmount() error {
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	return w.server.Unmount()
}

// State is a copy of what the model saw so far.
func (w *Watchdog) State() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.state
	s.Fired = append([]time.Time(nil), s.Fired...)
	return s
}

// ping restarts the timer (w.mu held).
func (w *Watchdog) ping() {
	w.state.Pings++
	w.restart()
	w.state.LastPet = w.state.LastRestart
}

// restart (re)starts the timer for the timeout in force (w.mu held).
func (w *Watchdog) restart() {
	w.state.LastRestart = time.Now()
	if w.timer != nil {
		w.timer.Stop()
	}
	timeout := w.state.Timeout
	var t *time.Timer
	t = time.AfterFunc(timeout, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.timer != t || !w.state.Running {
			return
		}
		w.state.Fired = append(w.state.Fired, time.Now())
		w.state.Running = false
		w.timer = nil
	})
	w.timer = t
}

func (w *Watchdog) stop() {
	w.state.Running = false
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
}

type root struct {
	fs.Inode
	w *Watchdog
}

var _ fs.NodeOnAdder = (*root)(nil)

func (r *root) OnAdd(ctx context.Context) {
	dev := r.NewPersistentInode(ctx, &device{w: r.w}, fs.StableAttr{Mode: syscall.S_IFREG})
	r.AddChild("watchdog", dev, false)
}

type device struct {
	fs.Inode
	w *Watchdog
}

var _ fs.NodeOpener = (*device)(nil)

// Open starts a stopped watchdog; the kernel allows one opener at a time.
func (d *device) Open(context.Context, uint32) (fs.FileHandle, uint32, syscall.Errno) {
	w := d.w
	w.mu.Lock()
	defer w.mu.Unlock()
	w.state.Opens++
	if !w.state.Running {
		w.state.Running = true
		w.restart()
	}
	return &handle{w: w}, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NONSEEKABLE, 0
}

type handle struct {
	w           *Watchdog
	expectClose bool
}

var (
	_ fs.FileWriter   = (*handle)(nil)
	_ fs.FileIoctler  = (*handle)(nil)
	_ fs.FileReleaser = (*handle)(nil)
)

// Write pings; a 'V' in it arms the magic close, a write without disarms it.
func (h *handle) Write(_ context.Context, data []byte, _ int64) (uint32, syscall.Errno) {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	h.expectClose = false
	for _, c := range data {
		if c == 'V' {
			h.expectClose = true
		}
	}
	h.w.ping()
	return uint32(len(data)), 0
}

// Ioctl serves WDIOC_GETSUPPORT, WDIOC_KEEPALIVE, WDIOC_SETTIMEOUT and
// WDIOC_GETTIMEOUT.
func (h *handle) Ioctl(_ context.Context, cmd uint32, _ uint64, input, output []byte) (int32, syscall.Errno) {
	w := h.w
	w.mu.Lock()
	defer w.mu.Unlock()
	switch cmd {
	case unix.WDIOC_GETSUPPORT:
		var info unix.WatchdogInfo
		info.Options = unix.WDIOF_SETTIMEOUT | unix.WDIOF_KEEPALIVEPING | unix.WDIOF_MAGICCLOSE
		copy(info.Identity[:], Identity)
		if len(output) < 40 {
			return 0, syscall.EINVAL
		}
		binary.LittleEndian.PutUint32(output[0:], info.Options)
		binary.LittleEndian.PutUint32(output[4:], info.Version)
		copy(output[8:40], info.Identity[:])
	case unix.WDIOC_KEEPALIVE:
		w.ping()
	case unix.WDIOC_SETTIMEOUT:
		if len(input) < 4 {
			return 0, syscall.EINVAL
		}
		secs := int32(binary.LittleEndian.Uint32(input))
		if secs < 1 {
			return 0, syscall.EINVAL
		}
		secs += secs % 2 // the driver's adjustment: an even number of seconds
		w.state.Timeout = time.Duration(secs) * time.Second
		w.ping()
		if len(output) >= 4 {
			binary.LittleEndian.PutUint32(output, uint32(secs))
		}
	case unix.WDIOC_GETTIMEOUT:
		if len(output) < 4 {
			return 0, syscall.EINVAL
		}
		binary.LittleEndian.PutUint32(output, uint32(w.state.Timeout/time.Second))
	default:
		return 0, syscall.ENOTTY
	}
	return 0, 0
}

// Release stops the watchdog after a magic close; otherwise it stays
// running, pinged once.
func (h *handle) Release(context.Context) syscall.Errno {
	w := h.w
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !w.state.Running:
	case h.expectClose:
		w.state.MagicCloses++
		w.stop()
	default:
		w.state.UnexpectedCloses++
		w.restart()
	}
	return 0
}
