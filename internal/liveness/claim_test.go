package liveness_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/poolkeeper/poolkeeper/internal/liveness"
)

func TestDecideClaim(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const T = 20 * time.Second
	base := liveness.ClaimInput{Mine: "h1/b", Holder: "h1/a", Since: t0, Declared: T, Timeout: T}
	cases := []struct {
		name   string
		mutate func(*liveness.ClaimInput)
		take   bool
		takeAt time.Time
	}{
		{"no Lease yet", func(in *liveness.ClaimInput) { in.Holder = "" }, true, time.Time{}},
		{"held by this boot (an agent restart on the same boot)", func(in *liveness.ClaimInput) { in.Holder = "h1/b" }, true, time.Time{}},
		{"held by another boot that renews", func(in *liveness.ClaimInput) { in.Now = t0.Add(T) }, false, t0.Add(T + T/2)},
		{"just before the holder is certainly gone", func(in *liveness.ClaimInput) { in.Now = t0.Add(T + T/2 - time.Millisecond) },
			false, t0.Add(T + T/2)},
		{"the holder silent for its deadline and the margin", func(in *liveness.ClaimInput) { in.Now = t0.Add(T + T/2) }, true, time.Time{}},
		{"a longer declared deadline is waited out", func(in *liveness.ClaimInput) {
			in.Declared, in.Now = 2*T, t0.Add(T+T/2)
		}, false, t0.Add(2*T + T/2)},
		{"a shorter declared deadline does not shorten the wait", func(in *liveness.ClaimInput) {
			in.Declared, in.Now = T/4, t0.Add(T)
		}, false, t0.Add(T + T/2)},
		{"the operator fenced the holder's boot", func(in *liveness.ClaimInput) { in.HolderFenced, in.Now = true, t0 }, true, time.Time{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			in := base
			in.Now = t0
			c.mutate(&in)
			got := liveness.DecideClaim(in)
			g.Expect(got.Take).To(Equal(c.take), got.Message)
			g.Expect(got.TakeAt).To(Equal(c.takeAt))
			g.Expect(got.Message).NotTo(BeEmpty())
		})
	}
}

func TestAgentConflict(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
	const T = 20 * time.Second
	c := liveness.AgentConflict("a", []liveness.Contender{
		{BootID: "c", LastSeen: now.Add(-5 * time.Second)},
		{BootID: "a", LastSeen: now}, // the holder's own, left from its wait
		{BootID: "b", LastSeen: now.Add(-15 * time.Second)},
		{BootID: "d", LastSeen: now.Add(-T)}, // silent for the timeout: gone
	}, now, T)
	g.Expect(c.Waiting).To(Equal([]liveness.Contender{
		{BootID: "b", LastSeen: now.Add(-15 * time.Second)}, {BootID: "c", LastSeen: now.Add(-5 * time.Second)}}))
	g.Expect(c.Gone).To(ConsistOf(liveness.Contender{BootID: "a", LastSeen: now}, liveness.Contender{BootID: "d", LastSeen: now.Add(-T)}))
	g.Expect(c.RecheckIn).To(Equal(5 * time.Second))

	g.Expect(liveness.AgentConflict("a", nil, now, T)).To(Equal(liveness.Conflict{}))
	g.Expect(liveness.BootOf("h1/boot-1")).To(Equal("boot-1"))
	g.Expect(liveness.BootOf("garbage")).To(BeEmpty())
}
