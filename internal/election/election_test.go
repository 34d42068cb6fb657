package election

import (
	"testing"

	. "github.com/onsi/gomega"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

const (
	live    = vpoolv1alpha1.HostPhaseLive
	unreach = vpoolv1alpha1.HostPhaseUnreachable
	fenced  = vpoolv1alpha1.HostPhaseFenced
	pending = vpoolv1alpha1.HostPhasePending
)

func hosts(phases map[string]vpoolv1alpha1.HostPhase, epoch map[string]int64) []Host {
	var out []Host
	for n, p := range phases {
		out = append(out, Host{Name: n, Phase: p, Epoch: epoch[n]})
	}
	return out
}

func TestDecide(t *testing.T) {
	cases := map[string]struct {
		in      Input
		master  string
		changed bool
		reason  string
	}{
		"first master: the requested one once Live": {Input{Requested: "b", Hosts: hosts(map[string]vpoolv1alpha1.HostPhase{"a": live, "b": live}, nil)}, "b", true, ReasonInitial},
		"first master waits for the requested one":  {Input{Requested: "b", Hosts: hosts(map[string]vpoolv1alpha1.HostPhase{"a": live, "b": pending}, nil)}, "", false, ReasonNoCandidate},
		"first master: first Live by name":          {Input{Hosts: hosts(map[string]vpoolv1alpha1.HostPhase{"c": live, "b": live, "a": pending}, nil)}, "b", true, ReasonInitial},
		"live master kept":                          {Input{Current: "a", Epoch: 1, Hosts: hosts(map[string]vpoolv1alpha1.HostPhase{"a": live, "b": live}, nil)}, "a", false, ReasonKeep},
		"planned hand-over":                         {Input{Current: "a", Requested: "b", Epoch: 1, Hosts: hosts(map[string]vpoolv1alpha1.HostPhase{"a": live, "b": live}, nil)}, "b", true, ReasonHandOver},
		"hand-over to a dead host ignored":          {Input{Current: "a", Requested: "b", Epoch: 1, Hosts: hosts(map[string]vpoolv1alpha1.HostPhase{"a": live, "b": unreach}, nil)}, "a", false, ReasonKeep},
		"HA off, master dead: wait for a person":    {Input{Current: "a", Epoch: 1, Hosts: hosts(map[string]vpoolv1alpha1.HostPhase{"a": fenced, "b": live}, nil)}, "a", false, ReasonWaitPerson},
		"HA off, person names a live member":        {Input{Current: "a", Requested: "b", Epoch: 1, Hosts: hosts(map[string]vpoolv1alpha1.HostPhase{"a": unreach, "b": live}, nil)}, "b", true, ReasonEmergency},
		"HA on, master unreachable: wait for fence": {Input{HAEnabled: true, Current: "a", Epoch: 1, Hosts: hosts(map[string]vpoolv1alpha1.HostPhase{"a": unreach, "b": live}, nil)}, "a", false, ReasonWaitFence},
		"HA on, master fenced: up-to-date host first": {Input{HAEnabled: true, Current: "a", Epoch: 3, Hosts: hosts(map[string]vpoolv1alpha1.HostPhase{"a": fenced, "b": live, "c": live},
			map[string]int64{"b": 2, "c": 3})}, "c", true, ReasonHAReplacement},
		"HA on, master fenced: spec.master preferred": {Input{HAEnabled: true, Current: "a", Requested: "c", Epoch: 3, Hosts: hosts(map[string]vpoolv1alpha1.HostPhase{"a": fenced, "b": live, "c": live},
			map[string]int64{"b": 3, "c": 2})}, "c", true, ReasonHAReplacement},
		"last host, a fenced master being forgotten: released": {Input{Current: "a", Epoch: 3,
			Hosts: []Host{{Name: "a", Phase: fenced, Forgetting: true}, {Name: "b", Phase: vpoolv1alpha1.HostPhaseForgotten}}}, "", true, ReasonReleased},
		"HA on, a fenced master being forgotten is released only when alone": {Input{HAEnabled: true, Current: "a", Epoch: 3,
			Hosts: []Host{{Name: "a", Phase: fenced, Forgetting: true}, {Name: "b", Phase: unreach}}}, "a", false, ReasonNoCandidate},
		"a fenced master nobody forgets is kept": {Input{Current: "a", Epoch: 3, Hosts: []Host{{Name: "a", Phase: fenced}}}, "a", false, ReasonWaitPerson},
		"HA on, master gone, nobody live":        {Input{HAEnabled: true, Current: "a", Epoch: 3, Hosts: hosts(map[string]vpoolv1alpha1.HostPhase{"b": unreach}, nil)}, "a", false, ReasonNoCandidate},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			d := Decide(tc.in)
			g.Expect(d.Master).To(Equal(tc.master), d.Message)
			g.Expect(d.Changed).To(Equal(tc.changed))
			g.Expect(d.Reason).To(Equal(tc.reason))
			g.Expect(d.Message).NotTo(BeEmpty())
		})
	}
}
