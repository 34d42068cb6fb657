package placement

import (
	"fmt"
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
}

// Decision is where a VM goes, or why it cannot go anywhere now.
type Decision struct {
	Host    string
	Reason  string
	Message string
}

// NoLiveHost is the decision for any VM of a pool with no Live host.
var NoLiveHost = Decision{Reason: ReasonNoLiveHost, Message: "no host of the pool is Live"}

// Place chooses a host for vm: its pinned host if a disk is on a local SR
// (which must be Live), else its affinity host if it fits, else the Live host
// with the most free memory that fits (ties by name).
func Place(vm VM, hosts []Host) Decision {
	if vm.PinnedTo != "" {
		for _, h := range hosts {
			if h.Name != vm.PinnedTo {
				continue
			}
			if !h.Live {
				return Decision{Reason: ReasonDiskUnavailable, Message: fmt.Sprintf(
					"a disk is on a local SR of host %s, which is not Live: the VM cannot run elsewhere", h.Name)}
			}
			if !h.Free().Fits(vm.Need) {
				return Decision{Reason: ReasonNoCapacity, Message: fmt.Sprintf(
					"a disk pins the VM to host %s, which lacks capacity (free %s)", h.Name, h.Free())}
			}
			return Decision{Host: h.Name, Reason: ReasonPlaced, Message: fmt.Sprintf("placed on %s, which owns its local SR", h.Name)}
		}
		return Decision{Reason: ReasonDiskUnavailable, Message: fmt.Sprintf("a disk is on a local SR of host %s, which is gone", vm.PinnedTo)}
	}
	var best *Host
	live := 0
	for i := range hosts {
		h := &hosts[i]
		if !h.Live {
			continue
		}
		live++
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
	default:
		return Decision{Reason: ReasonNoCapacity, Message: fmt.Sprintf("no Live host has %s free", vm.Need)}
	}
}

// String prints resources for messages.
func (r Resources) String() string {
	return fmt.Sprintf("cpu %dm, memory %dMi", r.MilliCPU, r.Memory>>20)
}
