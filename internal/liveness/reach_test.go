package liveness

import (
	"testing"
	"time"
)

func TestReach(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var r Reach
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, step := range []struct {
		s    int
		ok   bool
		want ReachChange
	}{
		{0, true, ReachChange{}},
		{1, false, ReachChange{Began: true, Since: at(1)}},
		{2, false, ReachChange{}},
		{3, false, ReachChange{}},
		{4, true, ReachChange{Ended: true, Since: at(1)}},
		{5, true, ReachChange{}},
		{6, false, ReachChange{Began: true, Since: at(6)}},
		{7, true, ReachChange{Ended: true, Since: at(6)}},
	} {
		if got := r.Probe(at(step.s), step.ok); got != step.want {
			t.Fatalf("probe at +%ds ok=%v: %+v, want %+v", step.s, step.ok, got, step.want)
		}
	}
}
