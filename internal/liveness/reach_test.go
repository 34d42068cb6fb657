package liveness

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
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

// The operator's own outage: from its start no silence counts (CutOff), and
// its end is where every pool's silence counts from.
func TestRecountCutOff(t *testing.T) {
	rc := NewRecount()
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	if _, cut := rc.CutOff(); cut {
		t.Fatal("cut off before any outage")
	}
	rc.Cut(t0)
	rc.Cut(t0.Add(time.Second)) // a later probe of the same outage
	if since, cut := rc.CutOff(); !cut || !since.Equal(t0) {
		t.Fatalf("CutOff() = %v, %v; want %v, true", since, cut, t0)
	}
	if from, _ := rc.From("ns/p"); !from.IsZero() {
		t.Fatalf("recounted from %v before the outage ended", from)
	}
	end := t0.Add(time.Minute)
	rc.Outage(end)
	if _, cut := rc.CutOff(); cut {
		t.Fatal("still cut off after the outage ended")
	}
	if from, _ := rc.From("ns/p"); !from.Equal(end) {
		t.Fatalf("From() = %v after the outage, want its end %v", from, end)
	}
}

// The operator's own stalls: once watched, a gap of more than StallAfter
// between two calls of Alive is a stall that counts every pool afresh from
// its end; shorter gaps, and any gap before the watch starts, are not.
func TestRecountAliveFindsStalls(t *testing.T) {
	rc := NewRecount()
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	run := clocktesting.NewFakePassiveClock(t0)
	rc.SetRunClock(run)
	run.SetTime(t0.Add(time.Hour))
	if d := rc.Alive(run.Now()); d != 0 {
		t.Fatalf("a stall (%s) found before the watch started", d)
	}
	run.SetTime(t0)
	rc.Watch()
	at := t0
	for range 8 { // ticks, late but within StallAfter
		at = at.Add(StallAfter)
		run.SetTime(at)
		if d := rc.Alive(at); d != 0 {
			t.Fatalf("a gap of StallAfter counted as a stall of %s", d)
		}
	}
	if from, _ := rc.From("ns/p"); !from.IsZero() {
		t.Fatalf("recounted from %v without a stall", from)
	}
	// A step of the decisions' clock alone (a test's fake clock) is no stall.
	if d := rc.Alive(at.Add(time.Hour)); d != 0 {
		t.Fatalf("a step of the decision clock counted as a stall of %s", d)
	}
	end := at.Add(20 * time.Second)
	run.SetTime(end)
	if d := rc.Alive(end); d != 20*time.Second {
		t.Fatalf("Alive() = %s after 20s without a call, want 20s", d)
	}
	if from, _ := rc.From("ns/p"); !from.Equal(end) {
		t.Fatalf("From() = %v after the stall, want its end %v", from, end)
	}
	run.SetTime(end.Add(time.Millisecond))
	if d := rc.Alive(end.Add(time.Millisecond)); d != 0 {
		t.Fatalf("the stall found twice (%s)", d)
	}
	st := rc.Stalls()
	if len(st) != 1 || !st[0].End.Equal(end) || st[0].For != 20*time.Second {
		t.Fatalf("Stalls() = %v, want one of 20s ending %v", st, end)
	}
	if st := rc.Stalls(); len(st) != 0 {
		t.Fatalf("Stalls() = %v again", st)
	}
}
