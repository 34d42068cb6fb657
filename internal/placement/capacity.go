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
	return false, fmt.Sprintf("the Live hosts (%s) can run every Restart VM (%s) and tolerate %d host failures",
		total, demand, failuresToTolerate)
}
