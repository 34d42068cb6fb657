package statefile

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestEachHostReadsTheOthersSlots(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	h1, err := Open(dir, "h1")
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = h1.Close() }()
	h2, err := Open(dir, "h2")
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = h2.Close() }()

	s := Slot{Host: "h1", BootID: "b1", Counter: 7, Reached: false, SinceOK: 12 * time.Second, Period: 2500 * time.Millisecond}
	g.Expect(h1.Write(s)).To(Succeed())
	got, err := h2.Read()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal([]Record{{Host: "h1", Intact: true, Slot: s}}), "h2 sees h1's slot, not its own")

	info, err := os.Stat(filepath.Join(dir, "h1.slot"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(info.Size()).To(Equal(int64(BlockSize)), "one block per host")
}

func TestATornOrForeignSlotIsNotIntact(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	h1, err := Open(dir, "h1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(h1.Write(Slot{Host: "h1", BootID: "b1", Counter: 1, Period: time.Second})).To(Succeed())
	g.Expect(h1.Close()).To(Succeed())
	reader, err := Open(dir, "h3")
	g.Expect(err).NotTo(HaveOccurred())

	block, err := os.ReadFile(filepath.Join(dir, "h1.slot"))
	g.Expect(err).NotTo(HaveOccurred())
	block[20] ^= 0xff // a torn write: the checksum no longer matches
	g.Expect(os.WriteFile(filepath.Join(dir, "h1.slot"), block, 0o640)).To(Succeed())
	// A copy of h1's slot under h2's name is not h2's.
	good := make([]byte, BlockSize)
	g.Expect(encode(good, Slot{Host: "h1", Counter: 2})).To(Succeed())
	g.Expect(os.WriteFile(filepath.Join(dir, "h2.slot"), good, 0o640)).To(Succeed())

	got, err := reader.Read()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(HaveLen(2))
	g.Expect(got).To(HaveEach(HaveField("Intact", false)))
}

func TestPeersTrustOnlyMovingSlots(t *testing.T) {
	g := NewWithT(t)
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	const period = time.Second
	rec := func(counter uint64, intact bool) []Record {
		return []Record{{Host: "h2", Intact: intact, Slot: Slot{Host: "h2", BootID: "b", Counter: counter, SinceOK: 15 * time.Second, Period: period}}}
	}
	var p Peers
	g.Expect(p.Observe(t0, rec(1, true))[0].Known).To(BeFalse(), "a first sighting proves nothing")
	g.Expect(p.Observe(t0.Add(period), rec(2, true))[0]).To(HaveField("Known", true))
	g.Expect(p.Observe(t0.Add(2*period), rec(2, true))[0].Known).To(BeTrue(), "within two periods of its last move")
	g.Expect(p.Observe(t0.Add(3*period+1), rec(2, true))[0].Known).To(BeFalse(), "stale: the writer stopped")
	g.Expect(p.Observe(t0.Add(4*period), rec(3, false))[0].Known).To(BeFalse(), "torn")
	g.Expect(p.Observe(t0.Add(5*period), rec(4, true))[0].Known).To(BeTrue())
}
