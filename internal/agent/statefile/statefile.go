// Package statefile keeps the agents' second heartbeat channel on a pool's
// heartbeat SR: one file per host, <host>.slot, in a directory of the SR's
// shared storage (a directory given by --sim-storage-dir with the sim
// driver, the SR's libvirt storage pool target with libvirt).
//
// Safe on shared storage such as NFS: each host writes only its own file,
// in place (never renamed, so no client's cached lookup of the name can go
// stale), one 4096-byte block at offset 0 with O_DIRECT|O_DSYNC, so the
// write is on the server's stable storage when it returns and bypasses the
// page cache. Readers open every other host's file with O_DIRECT and read
// the block, which goes to the server on every read: NFS serves O_DIRECT
// reads uncached. Where O_DIRECT is refused (tmpfs) the file is opened
// without it, with O_DSYNC, and read after posix_fadvise(DONTNEED) drops
// its cached pages. A block carries a CRC-32C of its contents: a torn or
// half-written block reads as not intact, and Peers counts a slot as known
// only when its counter moved within its freshness window on the reader's
// own clock, so a stale slot (a writer gone, a cache serving old data)
// reads as unknown, never as cut off.
package statefile

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BlockSize is the size of one host's slot on disk, and the alignment of
// O_DIRECT I/O.
const BlockSize = 4096

const magic = "PKSLOT01"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Slot is what one host writes every statefile period.
type Slot struct {
	// Host and BootID name the writer and its boot.
	Host   string `json:"host"`
	BootID string `json:"bootID"`
	// Counter grows by one at every write of this boot.
	Counter uint64 `json:"counter"`
	// Reached is true when the writer's last renewal reached the API server.
	Reached bool `json:"reached"`
	// SinceOK is the writer's view, on its monotonic clock, of the time since
	// the start of its last successful renewal.
	SinceOK time.Duration `json:"sinceOK"`
	// Period is how often the writer writes.
	Period time.Duration `json:"period"`
}

// Record is one slot as read: Intact is false for a torn or foreign block.
type Record struct {
	Host   string
	Intact bool
	Slot   Slot
}

// Dir is one host's view of the statefile directory.
type Dir struct {
	path, host string
	own        *os.File
	direct     bool
	buf        []byte
}

// Open opens (creating it if need be) the statefile directory path for host.
func Open(path, host string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o750); err != nil {
		return nil, fmt.Errorf("statefile %s: %w", path, err)
	}
	d := &Dir{path: path, host: host, buf: alignedBlock()}
	f, direct, err := openBlock(filepath.Join(path, host+".slot"), os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("statefile %s: %w", path, err)
	}
	d.own, d.direct = f, direct
	return d, nil
}

// Path is the directory.
func (d *Dir) Path() string { return d.path }

// Direct reports whether the host's own slot is written with O_DIRECT.
func (d *Dir) Direct() bool { return d.direct }

// Close closes the host's own slot.
func (d *Dir) Close() error { return d.own.Close() }

// Write writes the host's slot: one block, on stable storage when it returns.
func (d *Dir) Write(s Slot) error {
	if err := encode(d.buf, s); err != nil {
		return err
	}
	if _, err := d.own.WriteAt(d.buf, 0); err != nil {
		return fmt.Errorf("writing statefile slot %s: %w", d.own.Name(), err)
	}
	return nil
}

// Read reads every other host's slot, from the storage itself.
func (d *Dir) Read() ([]Record, error) {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("reading statefile %s: %w", d.path, err)
	}
	var out []Record
	for _, e := range entries {
		host, ok := strings.CutSuffix(e.Name(), ".slot")
		if !ok || host == d.host || e.IsDir() {
			continue
		}
		r := Record{Host: host}
		if err := d.readSlot(filepath.Join(d.path, e.Name()), &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (d *Dir) readSlot(name string, r *Record) error {
	f, direct, err := openBlock(name, os.O_RDONLY)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("reading statefile slot %s: %w", name, err)
	}
	defer func() { _ = f.Close() }()
	if !direct {
		// Drop whatever this client cached of the file: the read below goes
		// to the storage.
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
	clear(d.buf)
	n, err := f.ReadAt(d.buf, 0)
	if err != nil && n < len(d.buf) && n == 0 {
		return nil // empty: a slot created but never written
	}
	r.Slot, r.Intact = decode(d.buf[:n])
	r.Intact = r.Intact && r.Slot.Host == r.Host
	return nil
}

// openBlock opens name with O_DIRECT|O_DSYNC, or with O_DSYNC alone where
// the file system refuses O_DIRECT.
func openBlock(name string, flag int) (*os.File, bool, error) {
	f, err := os.OpenFile(name, flag|syscall.O_DIRECT|syscall.O_DSYNC, 0o640)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, syscall.EINVAL) {
		return nil, false, err
	}
	f, err = os.OpenFile(name, flag|syscall.O_DSYNC, 0o640)
	return f, false, err
}

// alignedBlock is a BlockSize buffer aligned for O_DIRECT.
func alignedBlock() []byte {
	raw := make([]byte, 2*BlockSize)
	off := int(uintptr(unsafe.Pointer(&raw[0])) & (BlockSize - 1))
	if off != 0 {
		off = BlockSize - off
	}
	return raw[off : off+BlockSize]
}

func encode(buf []byte, s Slot) error {
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if len(body) > len(buf)-16 {
		return fmt.Errorf("statefile slot of %s: %d bytes, more than a block", s.Host, len(body))
	}
	clear(buf)
	copy(buf, magic)
	binary.LittleEndian.PutUint32(buf[8:], uint32(len(body)))
	binary.LittleEndian.PutUint32(buf[12:], crc32.Checksum(body, castagnoli))
	copy(buf[16:], body)
	return nil
}

func decode(buf []byte) (Slot, bool) {
	var s Slot
	if len(buf) < 16 || string(buf[:8]) != magic {
		return s, false
	}
	n := int(binary.LittleEndian.Uint32(buf[8:]))
	if n > len(buf)-16 {
		return s, false
	}
	body := buf[16 : 16+n]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(buf[12:]) || json.Unmarshal(body, &s) != nil {
		return Slot{}, false
	}
	return s, true
}
