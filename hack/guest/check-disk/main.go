// Command check-disk reads the disk logs of poolkeeper's test guest
// (hack/guest; the layout is in package hack/guest/disklog) from volume
// files on the host and reports each volume's boots and whether two of them
// ever wrote at once.
//
//	check-disk [--tolerance 1s] VOLUME...
//
// Per volume it prints one line per boot (stamp, slot, start, last record,
// records) and a verdict:
//
//	VOLUME: ok: 2 boots, 412 records, one writer at a time
//	VOLUME: OVERLAP: boots A (...) and B (...) wrote at once for 3.2s
//
// Exit status: 0 when no volume shows two writers at once, 1 when one
// does, 2 when a volume cannot be read.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/poolkeeper/poolkeeper/hack/guest/disklog"
)

func main() {
	tolerance := flag.Duration("tolerance", disklog.Tolerance,
		"How far two boots' spans may overlap without counting as two writers (the guests' clock error).")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: check-disk [--tolerance 1s] VOLUME...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	status := 0
	for _, path := range flag.Args() {
		overlaps, err := check(path, *tolerance)
		switch {
		case err != nil:
			fmt.Fprintf(os.Stderr, "check-disk: %s: %v\n", path, err)
			status = 2
		case overlaps && status == 0:
			status = 1
		}
	}
	os.Exit(status)
}

func check(path string, tolerance time.Duration) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	boots, err := disklog.Read(f, st.Size())
	if err != nil {
		return false, err
	}
	var records int64
	for _, b := range boots {
		records += b.Records
		fmt.Printf("%s: boot %s slot %d start %s last %s records %d\n", path, b.Stamp, b.Slot,
			b.Start.Format("15:04:05.000"), b.End().Format("15:04:05.000"), b.Records)
	}
	overlaps := disklog.Overlaps(boots, tolerance)
	for _, o := range overlaps {
		fmt.Printf("%s: OVERLAP: %s\n", path, o)
	}
	if len(overlaps) == 0 {
		fmt.Printf("%s: ok: %d boots, %d records, one writer at a time\n", path, len(boots), records)
	}
	return len(overlaps) > 0, nil
}
