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
