package placement

import (
	"fmt"
	"slices"
	"strings"
)

// Reasons of placement decisions (the VM's Scheduled condition).
const (
	ReasonPlaced          = "Placed"
	ReasonNoCapacity      = "NoCapacity"
	ReasonDiskUnavailable = "DiskUnavailable"
	ReasonWaitingForOrder = "WaitingForStartOrder"
	ReasonWaitingPriority = "WaitingForRestartPriority"
	ReasonDoNotRestart    = "DoNotRestart"
	ReasonNoLiveHost      = "NoLiveHost"
	// ReasonAffinityHostNotFound: placed, but spec.affinity.host names no host of the pool.
	ReasonAffinityHostNotFound = "AffinityHostNotFound"
	// ReasonNetworkUnavailable: no Live host offers every network the VM's
	// interfaces name (the right NICs with the right names).
	ReasonNetworkUnavailable = "NetworkUnavailable"
	// ReasonStorageNotAttached: no Live host has every SR of the VM's disks
	// attached (plugged).
	ReasonStorageNotAttached = "StorageNotAttached"
)

// Resources is an amount of CPU (millicores) and memory (bytes).
type Resources struct {
	MilliCPU int64
	Memory   int64
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{MilliCPU: r.MilliCPU + o.MilliCPU, Memory: r.Memory + o.Memory}
}

// Fits reports whether need fits in r.
func (r Resources) Fits(need Resources) bool {
	return need.MilliCPU <= r.MilliCPU && need.Memory <= r.Memory
}

// Host is a candidate host.
type Host struct {
	Name     string
	Live     bool
	Capacity Resources
	// Used is what the VMs resident on the host (running or being started) take.
	Used Resources
	// Networks are the networks the host offers.
	Networks []string
	// ReportsAttachments is true when the host's agent reports which SRs
	// it has plugged; Attached are those SRs. A host that reports none
	// (an agent older than attachments) is taken to reach every SR.
	ReportsAttachments bool
	Attached           []string
}

// lacks says what the host lacks of what vm needs besides capacity: the
// networks it does not offer, the SRs it has not attached.
func (h Host) lacks(vm VM) (networks, srs []string) {
	for _, n := range vm.Networks {
		if !slices.Contains(h.Networks, n) {
			networks = append(networks, n)
		}
	}
	if h.ReportsAttachments {
		for _, sr := range vm.StorageRepositories {
			if !slices.Contains(h.Attached, sr) {
				srs = append(srs, sr)
			}
		}
	}
	return networks, srs
}

// Free is what is left on the host.
func (h Host) Free() Resources {
	return Resources{MilliCPU: h.Capacity.MilliCPU - h.Used.MilliCPU, Memory: h.Capacity.Memory - h.Used.Memory}
}

// VM is a VM to place.
type VM struct {
	Name     string
	Need     Resources
	Affinity string
	// PinnedTo is the host owning a local SR one of its disks is on ("" if none).
	PinnedTo string
	// Networks are the networks its interfaces name; StorageRepositories
	// the SRs of its disks.
	Networks, StorageRepositories []string
}

// Decision is where a VM goes, or why it cannot go anywhere now.
type Decision struct {
	Host    string
	Reason  string
	Message string
}

// NoLiveHost is the decision for any VM of a pool with no Live host.
var NoLiveHost = Decision{Reason: ReasonNoLiveHost, Message: "no host of the pool is Live"}

// Place chooses a host for vm among the Live hosts that offer every network
// it names and have every SR of its disks attached: its pinned host if a disk
// is on a local SR (which must be Live), else its affinity host if it fits,
// else the host with the most free memory that fits (ties by name).
func Place(vm VM, hosts []Host) Decision {
	if vm.PinnedTo != "" {
		return placePinned(vm, hosts)
	}
	var best *Host
	live, fit := 0, 0
	var missing lack
	for i := range hosts {
		h := &hosts[i]
		if !h.Live {
			continue
		}
		live++
		if nets, srs := h.lacks(vm); len(nets)+len(srs) > 0 {
			missing.add(nets, srs)
			continue
		}
		fit++
		if !h.Free().Fits(vm.Need) {
			continue
		}
		if h.Name == vm.Affinity {
			return Decision{Host: h.Name, Reason: ReasonPlaced, Message: fmt.Sprintf("placed on %s (affinity)", h.Name)}
		}
		if best == nil || h.Free().Memory > best.Free().Memory ||
			(h.Free().Memory == best.Free().Memory && h.Name < best.Name) {
			best = h
		}
	}
	switch {
	case best != nil:
		return Decision{Host: best.Name, Reason: ReasonPlaced, Message: fmt.Sprintf("placed on %s", best.Name)}
	case live == 0:
		return NoLiveHost
	case fit == 0:
		return missing.decision(vm)
	default:
		return Decision{Reason: ReasonNoCapacity, Message: fmt.Sprintf("no Live host has %s free", vm.Need)}
	}
}

// placePinned places a VM whose disk is on a local SR: on that SR's host or nowhere.
func placePinned(vm VM, hosts []Host) Decision {
	i := slices.IndexFunc(hosts, func(h Host) bool { return h.Name == vm.PinnedTo })
	if i < 0 {
		return Decision{Reason: ReasonDiskUnavailable, Message: fmt.Sprintf("a disk is on a local SR of host %s, which is gone", vm.PinnedTo)}
	}
	h := hosts[i]
	if !h.Live {
		return Decision{Reason: ReasonDiskUnavailable, Message: fmt.Sprintf(
			"a disk is on a local SR of host %s, which is not Live: the VM cannot run elsewhere", h.Name)}
	}
	if nets, srs := h.lacks(vm); len(nets)+len(srs) > 0 {
		var missing lack
		missing.add(nets, srs)
		return missing.decision(vm)
	}
	if !h.Free().Fits(vm.Need) {
		return Decision{Reason: ReasonNoCapacity, Message: fmt.Sprintf(
			"a disk pins the VM to host %s, which lacks capacity (free %s)", h.Name, h.Free())}
	}
	return Decision{Host: h.Name, Reason: ReasonPlaced, Message: fmt.Sprintf("placed on %s, which owns its local SR", h.Name)}
}

// lack gathers what the Live hosts lack for a VM.
type lack struct {
	// networks and srs count, by name, the hosts lacking each.
	networks, srs map[string]int
	hosts         int
}

func (l *lack) add(networks, srs []string) {
	if l.networks == nil {
		l.networks, l.srs = map[string]int{}, map[string]int{}
	}
	l.hosts++
	for _, n := range networks {
		l.networks[n]++
	}
	for _, sr := range srs {
		l.srs[sr]++
	}
}

// decision says why no Live host fits, naming what every one lacks first,
// networks before SRs.
func (l *lack) decision(vm VM) Decision {
	everywhere := func(counts map[string]int, names []string) []string {
		var out []string
		for _, n := range names {
			if counts[n] == l.hosts && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		return out
	}
	if nets := everywhere(l.networks, vm.Networks); len(nets) > 0 {
		return Decision{Reason: ReasonNetworkUnavailable, Message: fmt.Sprintf("no Live host offers network %s", strings.Join(nets, ", "))}
	}
	if srs := everywhere(l.srs, vm.StorageRepositories); len(srs) > 0 {
		return Decision{Reason: ReasonStorageNotAttached, Message: fmt.Sprintf("no Live host has SR %s attached", strings.Join(srs, ", "))}
	}
	var needs []string
	if len(vm.Networks) > 0 {
		needs = append(needs, "network "+strings.Join(vm.Networks, ", "))
	}
	if len(vm.StorageRepositories) > 0 {
		needs = append(needs, "SR "+strings.Join(vm.StorageRepositories, ", ")+" attached")
	}
	reason := ReasonStorageNotAttached
	if len(l.networks) > 0 {
		reason = ReasonNetworkUnavailable
	}
	return Decision{Reason: reason, Message: "no Live host has all of " + strings.Join(needs, " and ")}
}

// String prints resources for messages.
func (r Resources) String() string {
	return fmt.Sprintf("cpu %dm, memory %dMi", r.MilliCPU, r.Memory>>20)
}
