package statefile

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// periodsPerInterval is how many statefile periods one heartbeat interval
// holds: the agent writes and reads the statefile every half interval
// (internal/agent/survival.go, publish: period = interval/2).
const periodsPerInterval = 2

// BenchmarkStatefilePeriod100Hosts measures what one host's statefile period
// costs in a pool of 100 hosts: its write of its own slot and its read of
// the 99 others', through Open, Write and Read as the agent uses them, on a
// real file system (the test's temporary directory; O_DIRECT where it is
// allowed). One op is one period. The I/O is counted by the kernel: the
// benchmark runs locked to one thread, and that thread's
// /proc/thread-self/io is read around the timed periods (the Go runtime's
// own wake-ups on other threads stay out of it): bytes passed to and from
// write and read system calls (wchar, rchar), their number (syscw, syscr),
// and the bytes that reached the storage below any page cache
// (write_bytes, read_bytes). Opens and the directory listing (getdents)
// are not in those counters. ns/period is split into the write (O_DSYNC: on
// stable storage when it returns) and the read of the 99 slots.
func BenchmarkStatefilePeriod100Hosts(b *testing.B) {
	const hosts = 100
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dir := b.TempDir()
	name := func(i int) string { return fmt.Sprintf("h-%03d", i) }
	for i := 1; i < hosts; i++ { // the other hosts, each having written its slot
		d, err := Open(dir, name(i))
		if err != nil {
			b.Fatal(err)
		}
		err = d.Write(Slot{Host: name(i), BootID: "boot-" + name(i), Counter: 1, Period: 5 * time.Second, SinceOK: time.Second})
		if cerr := d.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	me, err := Open(dir, name(0))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = me.Close() }()
	slot := Slot{Host: name(0), BootID: "boot-" + name(0), Period: 5 * time.Second, SinceOK: time.Second}
	var writing, reading time.Duration
	period := func() {
		slot.Counter++
		t0 := time.Now()
		if err := me.Write(slot); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		records, err := me.Read()
		writing, reading = writing+t1.Sub(t0), reading+time.Since(t1)
		if err != nil {
			b.Fatal(err)
		}
		if len(records) != hosts-1 {
			b.Fatalf("read %d slots, want %d", len(records), hosts-1)
		}
		for _, r := range records {
			if !r.Intact {
				b.Fatalf("slot of %s not intact", r.Host)
			}
		}
	}
	period() // warm: the directory's own blocks are cached as they are between periods
	writing, reading = 0, 0
	io0, err := readProcIO()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		period()
	}
	b.StopTimer()
	io1, err := readProcIO()
	if err != nil {
		b.Fatal(err)
	}
	// The second snapshot counts the first one's read system call.
	d := io1.minus(io0)
	d["syscr"]--
	d["rchar"] -= io0.size
	n := float64(b.N)
	per := func(key string) float64 { return float64(d[key]) / n }
	b.ReportMetric(per("wchar"), "B_written/period")
	b.ReportMetric(per("rchar"), "B_read/period")
	b.ReportMetric(per("syscw"), "writes/period")
	b.ReportMetric(per("syscr"), "reads/period")
	b.ReportMetric(per("write_bytes"), "storage_B_written/period")
	b.ReportMetric(per("read_bytes"), "storage_B_read/period")
	b.ReportMetric(periodsPerInterval*per("wchar"), "B_written/heartbeat")
	b.ReportMetric(periodsPerInterval*per("rchar"), "B_read/heartbeat")
	b.ReportMetric(periodsPerInterval*per("syscr"), "reads/heartbeat")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/period")
	b.ReportMetric(float64(writing.Nanoseconds())/n, "ns_write/period")
	b.ReportMetric(float64(reading.Nanoseconds())/n, "ns_read/period")
	direct := 0.0
	if me.Direct() {
		direct = 1
	}
	b.ReportMetric(direct, "o_direct")
}

// procIO is one snapshot of /proc/thread-self/io; size is how many bytes the
// snapshot's own read returned.
type procIO struct {
	counters map[string]int64
	size     int64
}

// readProcIO takes a snapshot with a single read system call, so that the
// next snapshot counts exactly one read of size bytes for it.
func readProcIO() (procIO, error) {
	fd, err := unix.Open("/proc/thread-self/io", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return procIO{}, fmt.Errorf("/proc/thread-self/io: %w", err)
	}
	defer func() { _ = unix.Close(fd) }()
	buf := make([]byte, 4096)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return procIO{}, fmt.Errorf("/proc/thread-self/io: %w", err)
	}
	p := procIO{counters: map[string]int64{}, size: int64(n)}
	for line := range bytes.Lines(buf[:n]) {
		key, value, ok := bytes.Cut(bytes.TrimSpace(line), []byte(": "))
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(string(value), 10, 64)
		if err != nil {
			return procIO{}, fmt.Errorf("/proc/thread-self/io: %q: %w", line, err)
		}
		p.counters[string(key)] = v
	}
	if len(p.counters) == 0 || n == len(buf) {
		return procIO{}, fmt.Errorf("/proc/thread-self/io: unexpected %q", buf[:n])
	}
	return p, nil
}

func (p procIO) minus(q procIO) map[string]int64 {
	d := map[string]int64{}
	for k, v := range p.counters {
		d[k] = v - q.counters[k]
	}
	return d
}
