package libvirt

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/poolkeeper/poolkeeper/internal/agent/statefile"
)

// TestStatefileDir resolves a heartbeat SR's storage pool to its statefile
// directory: in the pool's target, one directory per pool (two namespaces
// sharing one storage pool keep two statefiles), where a slot can be
// written and read back; a missing storage pool is an error that names it.
func TestStatefileDir(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d := f.driver(t, "h1", "boot-1")
	pool, target := testPool(t, f.raw)

	dirs := map[string]string{}
	for _, ns := range []string{f.ns, f.ns + "-b"} {
		dir, err := d.StatefileDir(ctx, pool, ns, "p")
		if err != nil {
			t.Fatalf("StatefileDir(%s, %s, p): %v", pool, ns, err)
		}
		if want := filepath.Join(target, StatefileDirName, ns+"_p"); dir != want {
			t.Errorf("StatefileDir(%s, %s, p) = %q, want %q", pool, ns, dir, want)
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		dirs[ns] = dir
	}
	if dirs[f.ns] == dirs[f.ns+"-b"] {
		t.Errorf("two namespaces share the statefile %s", dirs[f.ns])
	}

	sf, err := statefile.Open(dirs[f.ns], "h1")
	if err != nil {
		t.Fatalf("opening the statefile in %s: %v", dirs[f.ns], err)
	}
	defer func() { _ = sf.Close() }()
	if err := sf.Write(statefile.Slot{Host: "h1", BootID: "boot-1", Counter: 7}); err != nil {
		t.Fatalf("writing h1's slot: %v", err)
	}
	peer, err := statefile.Open(dirs[f.ns], "h2")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = peer.Close() }()
	recs, err := peer.Read()
	if err != nil || len(recs) != 1 || !recs[0].Intact || recs[0].Slot.Counter != 7 {
		t.Errorf("h2 reading the statefile: %+v, %v; want h1's slot, counter 7", recs, err)
	}

	if _, err := d.StatefileDir(ctx, "no-such-pool", f.ns, "p"); err == nil ||
		!strings.Contains(err.Error(), `"no-such-pool" is not defined`) {
		t.Errorf("StatefileDir of a missing storage pool: %v, want an error saying it is not defined", err)
	}
}
