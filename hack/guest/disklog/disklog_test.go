package disklog

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// volume builds a disk of n slots as hack/guest/init writes it.
type volume []byte

func newVolume(slots int) volume { return make(volume, slots*SlotSize) }

func (v volume) put(sector int, line string) {
	copy(v[sector*SectorSize:(sector+1)*SectorSize], append([]byte(line+"\n"), make([]byte, SectorSize)...))
}

// boot writes a boot's header at start and n records every step from
// first, as the guest does.
func (v volume) boot(slot int, stamp string, start time.Time, first time.Duration, step time.Duration, n int) {
	v.put(slot*SlotSectors, fmt.Sprintf("PKBOOT1 %s %d %d", stamp, start.UnixMilli(), slot))
	for c := range n {
		t := start.Add(first + time.Duration(c)*step)
		v.put(slot*SlotSectors+1+c%RingSectors, fmt.Sprintf("PKREC1 %s %d %d 1.23", stamp, c, t.UnixMilli()))
	}
}

func read(t *testing.T, v volume) []Boot {
	t.Helper()
	boots, err := Read(bytes.NewReader(v), int64(len(v)))
	if err != nil {
		t.Fatal(err)
	}
	return boots
}

var t0 = time.UnixMilli(1_796_136_000_000)

func TestOneWriterAtATime(t *testing.T) {
	v := newVolume(16)
	// The first boot runs 30s (its ring wraps), is killed; the second starts
	// on another host 8s later, in a slot below the first's.
	v.boot(9, "aaaa", t0, 200*time.Millisecond, 150*time.Millisecond, 200)
	v.boot(3, "bbbb", t0.Add(38*time.Second), 100*time.Millisecond, 150*time.Millisecond, 10)
	boots := read(t, v)
	if len(boots) != 2 || boots[0].Stamp != "aaaa" || boots[1].Stamp != "bbbb" {
		t.Fatalf("boots = %+v, want aaaa then bbbb", boots)
	}
	a := boots[0]
	if a.Records != 200 || a.Kept != RingSectors || a.Slot != 9 {
		t.Errorf("first boot: records %d kept %d slot %d, want 200, %d, 9", a.Records, a.Kept, a.Slot, RingSectors)
	}
	if want := t0.Add(200*time.Millisecond + 199*150*time.Millisecond); !a.End().Equal(want) {
		t.Errorf("first boot ends %s, want %s", a.End(), want)
	}
	if want := t0.Add(200*time.Millisecond + 73*150*time.Millisecond); !a.First.Equal(want) {
		t.Errorf("first boot's oldest kept record %s, want %s (record 73)", a.First, want)
	}
	if o := Overlaps(boots, Tolerance); len(o) != 0 {
		t.Errorf("overlaps %v, want none", o)
	}
}

func TestTwoWritersAtOnce(t *testing.T) {
	v := newVolume(16)
	v.boot(2, "aaaa", t0, 0, 150*time.Millisecond, 100)                    // 0 to 14.85s
	v.boot(5, "bbbb", t0.Add(10*time.Second), 0, 150*time.Millisecond, 40) // 10s to 15.85s
	o := Overlaps(read(t, v), Tolerance)
	if len(o) != 1 || o[0].A.Stamp != "aaaa" || o[0].B.Stamp != "bbbb" || o[0].By != 4850*time.Millisecond {
		t.Fatalf("overlaps %v, want aaaa and bbbb by 4.85s", o)
	}
	if s := o[0].String(); !strings.Contains(s, "wrote at once for 4.85s") {
		t.Errorf("%q does not say how long", s)
	}
	// A second of clock error (a TCG guest) is not two writers.
	v = newVolume(16)
	v.boot(2, "aaaa", t0, 0, 150*time.Millisecond, 100)
	v.boot(5, "bbbb", t0.Add(14*time.Second), 0, 150*time.Millisecond, 40)
	if o := Overlaps(read(t, v), Tolerance); len(o) != 0 {
		t.Errorf("overlap of 0.85s counted: %v", o)
	}
}

func TestSharedSlot(t *testing.T) {
	v := newVolume(4)
	v.boot(1, "aaaa", t0, 0, 150*time.Millisecond, 5)
	// A boot that found slot 1 free at the same moment writes its records
	// there too, over the first one's header.
	v.put(1*SlotSectors+3, fmt.Sprintf("PKREC1 bbbb 2 %d 1.0", t0.Add(time.Second).UnixMilli()))
	o := Overlaps(read(t, v), Tolerance)
	if len(o) != 1 || o[0].B.Stamp != "bbbb" {
		t.Fatalf("overlaps %v, want the foreign record of bbbb", o)
	}
}

func TestEmptyAndBad(t *testing.T) {
	if boots := read(t, newVolume(3)); len(boots) != 0 {
		t.Errorf("an empty volume has boots %v", boots)
	}
	// A volume smaller than a slot has none.
	if boots, err := Read(bytes.NewReader(make([]byte, 1000)), 1000); err != nil || len(boots) != 0 {
		t.Errorf("a tiny volume: %v %v", boots, err)
	}
	v := newVolume(2)
	v.boot(0, "aaaa", t0, 0, time.Second, 2)
	v.put(5, "PKREC1 aaaa 9 nonsense")
	if _, err := Read(bytes.NewReader(v), int64(len(v))); err == nil {
		t.Error("a bad record was not reported")
	}
}
