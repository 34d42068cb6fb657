// Package disklog reads the disk log of poolkeeper's test guest
// (hack/guest/init) from a volume on the host, and tells whether two boots
// of the guest ever wrote to it at the same time — whether one VM ever ran
// twice at once.
//
// # Layout
//
// The disk is cut into slots of SlotSectors sectors of 512 bytes. A boot
// takes a random boot stamp (a UUID), picks a slot from it and, going up
// from there, takes the first free one (whose first sector is not a
// header). The slot's first sector is the boot's header, written once, at
// start:
//
//	PKBOOT1 <stamp> <unix-ms> <slot>
//
// and the other RingSectors sectors hold its records, record c in sector
// 1 + c mod RingSectors, about one every 150 ms:
//
//	PKREC1 <stamp> <counter> <unix-ms> <uptime-seconds>
//
// each line zero-padded to its sector and written with O_DIRECT, so a record
// the guest wrote is in the volume even if the guest is killed right after.
// A boot writes nothing outside its slot, so no boot's history is
// overwritten by another's: the first and last records of each boot say
// when it wrote, and two boots whose spans intersect ran at once. Times are
// the guest's wall clock: exact to the millisecond with KVM (kvm-clock), up
// to a second behind under QEMU TCG (the guest reads the CMOS clock, in
// whole seconds, at boot), which Tolerance covers.
package disklog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The layout of hack/guest/init.
const (
	SectorSize  = 512
	SlotSectors = 128
	RingSectors = SlotSectors - 1
	SlotSize    = SlotSectors * SectorSize
)

// Tolerance is the clock error two boots' spans may overlap by without
// counting as two writers: a TCG guest's clock starts up to a second behind.
const Tolerance = time.Second

// Boot is one boot of the guest, as its slot shows it.
type Boot struct {
	Stamp string
	Slot  int
	// Start is when the boot wrote its header; First and Last are its
	// first and last records' times (zero without records).
	Start, First, Last time.Time
	// Records is the number of records the boot wrote (its last counter +
	// 1); Kept is how many are still in its ring.
	Records, Kept int64
	// Foreign are records of other stamps found in this boot's slot: two
	// boots took the same slot, which only boots running at once can do.
	Foreign []string
}

// End is the last time the boot is known to have written.
func (b Boot) End() time.Time {
	if b.Last.After(b.Start) {
		return b.Last
	}
	return b.Start
}

// Overlap is two boots that wrote at once: their spans intersect by By.
type Overlap struct {
	A, B Boot
	By   time.Duration
}

func (o Overlap) String() string {
	return fmt.Sprintf("boots %s (slot %d, %s to %s) and %s (slot %d, %s to %s) wrote at once for %s",
		o.A.Stamp, o.A.Slot, clock(o.A.Start), clock(o.A.End()), o.B.Stamp, o.B.Slot, clock(o.B.Start), clock(o.B.End()),
		o.By.Round(time.Millisecond))
}

func clock(t time.Time) string { return t.Format("15:04:05.000") }

// Read reads every boot of a volume of size bytes, ordered by start.
func Read(r io.ReaderAt, size int64) ([]Boot, error) {
	var boots []Boot
	sector := make([]byte, SectorSize)
	for slot := 0; int64(slot+1)*SlotSize <= size; slot++ {
		base := int64(slot) * SlotSize
		if _, err := r.ReadAt(sector, base); err != nil {
			return nil, fmt.Errorf("reading slot %d: %w", slot, err)
		}
		f := fields(sector)
		if len(f) < 4 || f[0] != "PKBOOT1" {
			continue
		}
		ms, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("slot %d: bad header %q", slot, strings.Join(f, " "))
		}
		b := Boot{Stamp: f[1], Slot: slot, Start: time.UnixMilli(ms)}
		ring := make([]byte, RingSectors*SectorSize)
		if _, err := r.ReadAt(ring, base+SectorSize); err != nil {
			return nil, fmt.Errorf("reading slot %d: %w", slot, err)
		}
		if err := b.readRing(ring); err != nil {
			return nil, fmt.Errorf("slot %d: %w", slot, err)
		}
		boots = append(boots, b)
	}
	slices.SortFunc(boots, func(a, b Boot) int { return a.Start.Compare(b.Start) })
	return boots, nil
}

func (b *Boot) readRing(ring []byte) error {
	first := int64(-1)
	for i := range RingSectors {
		f := fields(ring[i*SectorSize : (i+1)*SectorSize])
		if len(f) == 0 {
			continue
		}
		if len(f) < 4 || f[0] != "PKREC1" {
			return fmt.Errorf("bad record %q in sector %d", strings.Join(f, " "), 1+i)
		}
		if f[1] != b.Stamp {
			b.Foreign = append(b.Foreign, f[1])
			continue
		}
		c, err1 := strconv.ParseInt(f[2], 10, 64)
		ms, err2 := strconv.ParseInt(f[3], 10, 64)
		if err := errors.Join(err1, err2); err != nil || c%RingSectors != int64(i) {
			return fmt.Errorf("bad record %q in sector %d", strings.Join(f, " "), 1+i)
		}
		t := time.UnixMilli(ms)
		b.Kept++
		if c+1 > b.Records {
			b.Records, b.Last = c+1, t
		}
		if first < 0 || c < first {
			first, b.First = c, t
		}
	}
	return nil
}

// fields are the words of a sector's first line.
func fields(sector []byte) []string {
	line, _, _ := bytes.Cut(sector, []byte{'\n'})
	line, _, _ = bytes.Cut(line, []byte{0})
	return strings.Fields(string(line))
}

// Overlaps lists every two boots whose spans intersect by more than
// tolerance, and every boot whose slot holds another boot's records.
func Overlaps(boots []Boot, tolerance time.Duration) []Overlap {
	var out []Overlap
	for i, a := range boots {
		for _, b := range boots[i+1:] {
			// b starts no earlier than a (Read's order).
			if by := minTime(a.End(), b.End()).Sub(b.Start); by > tolerance {
				out = append(out, Overlap{A: a, B: b, By: by})
			}
		}
		for _, stamp := range a.Foreign {
			out = append(out, Overlap{A: a, B: Boot{Stamp: stamp, Slot: a.Slot}})
		}
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
