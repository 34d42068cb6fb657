package placement

import (
	"fmt"
	"slices"
	"strings"
)

// Pending is a VM that should run and has no host yet.
type Pending struct {
	VM
	StartOrder int32
	// BestEffort is restartPriority BestEffort: placed after every other VM.
	BestEffort bool
	// Blocked, when set, is why the VM cannot be placed whatever the other
	// VMs do (a disk missing or held by another host, DoNotRestart after a
	// reset), or why a vApp member waits for its vApp's earlier start-order
	// groups (Appliance.Gate). A blocked VM holds nobody back.
	Blocked *Decision
}

// Starting is a VM placed on a Live host that does not run yet.
type Starting struct {
	StartOrder int32
	BestEffort bool
}

// rank orders VMs: Restart (and DoNotRestart) VMs before BestEffort ones,
// then lower startOrder first.
type rank struct {
	bestEffort bool
	startOrder int32
}

func (r rank) before(o rank) bool {
	if r.bestEffort != o.bestEffort {
		return !r.bestEffort
	}
	return r.startOrder < o.startOrder
}

// Schedule decides in one pass where each pending VM of a pool goes, as a
// vApp boots: VMs of one rank (restart priority, then startOrder) are placed
// together, and a rank waits until every VM of a lower rank that was placed
// has started, so a VM never starts before one it depends on. A VM that
// cannot be placed for a reason of its own (Blocked, or no host fits) holds
// nobody back. Capacity taken by a placement is seen by the next one.
// hosts' Used must count every VM resident on them; hosts is not modified.
// The result is indexed like pending.
func Schedule(pending []Pending, starting []Starting, hosts []Host) []Decision {
	// Only Live hosts can take a VM; a pinned VM needs its host, Live or not.
	all := hosts
	hosts = slices.DeleteFunc(slices.Clone(hosts), func(h Host) bool { return !h.Live })
	out := make([]Decision, len(pending))
	var hold *rank
	for _, s := range starting {
		r := rank{s.BestEffort, s.StartOrder}
		if hold == nil || r.before(*hold) {
			hold = &r
		}
	}
	order := make([]int, len(pending))
	for i := range order {
		order[i] = i
	}
	rankOf := func(i int) rank { return rank{pending[i].BestEffort, pending[i].StartOrder} }
	slices.SortStableFunc(order, func(a, b int) int {
		ra, rb := rankOf(a), rankOf(b)
		switch {
		case ra.before(rb):
			return -1
		case rb.before(ra):
			return 1
		}
		return strings.Compare(pending[a].Name, pending[b].Name)
	})
	for _, i := range order {
		p, r := &pending[i], rankOf(i)
		switch {
		case p.Blocked != nil:
			out[i] = *p.Blocked
		case hold != nil && hold.before(r):
			out[i] = waitFor(*hold, r)
		case len(hosts) == 0 && p.PinnedTo == "":
			out[i] = NoLiveHost
		default:
			candidates := hosts
			if p.PinnedTo != "" {
				candidates = all
				if j := slices.IndexFunc(hosts, func(h Host) bool { return h.Name == p.PinnedTo }); j >= 0 {
					candidates = hosts[j : j+1] // with the capacity taken in this pass
				}
			}
			d := affinityKnown(Place(p.VM, candidates), p.VM, all)
			if d.Host != "" {
				for j := range hosts {
					if hosts[j].Name == d.Host {
						hosts[j].Used = hosts[j].Used.Add(p.Need)
					}
				}
				if hold == nil {
					hold = &r
				}
			}
			out[i] = d
		}
	}
	return out
}

// waitFor is the decision of a VM of rank r held back by VMs of rank hold
// that are starting. Its message names the rank, not the VMs, so that it
// does not change (and is not written again) as they start one by one.
func waitFor(hold, r rank) Decision {
	if r.bestEffort && !hold.bestEffort {
		return Decision{Reason: ReasonWaitingPriority, Message: "BestEffort: waiting for the pool's other VMs to start first"}
	}
	return Decision{Reason: ReasonWaitingForOrder, Message: fmt.Sprintf("waiting for the VMs with startOrder %d to start", hold.startOrder)}
}

// affinityKnown says on a placement that the VM's preferred host is no host
// of the pool: the preference is kept, and the VM runs elsewhere meanwhile.
func affinityKnown(d Decision, vm VM, all []Host) Decision {
	if d.Host == "" || vm.Affinity == "" || vm.PinnedTo != "" ||
		slices.ContainsFunc(all, func(h Host) bool { return h.Name == vm.Affinity }) {
		return d
	}
	return Decision{Host: d.Host, Reason: ReasonAffinityHostNotFound, Message: fmt.Sprintf(
		"spec.affinity.host: %s is not a host of this pool; %s instead", vm.Affinity, d.Message)}
}
