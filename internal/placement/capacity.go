package placement

import (
	"fmt"
	"sort"
)

// Overcommitted reports whether the Live hosts cannot restart every Restart
// VM (demand) or could not after losing failuresToTolerate of the largest
// of them. It compares aggregate capacity, a necessary condition: a True
// answer is certain, a False one does not promise a packing.
func Overcommitted(live []Resources, demand Resources, failuresToTolerate int) (bool, string) {
	var total Resources
	for _, r := range live {
		total = total.Add(r)
	}
	if !total.Fits(demand) {
		return true, fmt.Sprintf("the Live hosts (%s) cannot run every Restart VM (%s)", total, demand)
	}
	sorted := append([]Resources(nil), live...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Memory > sorted[j].Memory })
	left := total
	for i := 0; i < failuresToTolerate && i < len(sorted); i++ {
		left = Resources{MilliCPU: left.MilliCPU - sorted[i].MilliCPU, Memory: left.Memory - sorted[i].Memory}
	}
	if failuresToTolerate > 0 && (failuresToTolerate >= len(sorted) || !left.Fits(demand)) {
		return true, fmt.Sprintf("after losing %d of the largest Live hosts the rest (%s) could not run every Restart VM (%s)",
			failuresToTolerate, left, demand)
	}
	failures := "host failures"
	if failuresToTolerate == 1 {
		failures = "host failure"
	}
	return false, fmt.Sprintf("the Live hosts (%s) can run every Restart VM (%s) and tolerate %d %s",
		total, demand, failuresToTolerate, failures)
}

// ReasonNoHostFits is why a running VM's new size waits: no host of the pool
// has the capacity for it.
const ReasonNoHostFits = "NoHostFits"

// Resized decides about a running VM whose spec asks for need: nil when some
// host of the pool, empty, could run it at that size; else a decision saying
// that the VM runs on at the size it booted with and that its next boot,
// which takes the new size, fits no host.
func Resized(need Resources, hosts []Host) *Decision {
	var largest Resources
	for _, h := range hosts {
		if h.Capacity.Fits(need) {
			return nil
		}
		if h.Capacity.Memory > largest.Memory {
			largest = h.Capacity
		}
	}
	return &Decision{Reason: ReasonNoHostFits, Message: fmt.Sprintf(
		"spec.resources (%s) fit no host of the pool (the largest offers %s): the VM runs on at the size it booted with; "+
			"the new size takes effect at its next boot, which no host can take", need, largest)}
}
