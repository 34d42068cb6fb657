package backup

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Kinds named in Problems, in the order a restore creates them.
const (
	// KindSecret is a Secret (a host's BMC credentials).
	KindSecret = "Secret"
	// KindStorageRepository is a StorageRepository.
	KindStorageRepository = "StorageRepository"
	// KindVirtualDisk is a VirtualDisk.
	KindVirtualDisk = "VirtualDisk"
	// KindVirtualMachine is a VirtualMachine.
	KindVirtualMachine = "VirtualMachine"
	// KindHost is a Host.
	KindHost = "Host"
	// KindPool is the Pool (for notes about the whole restore).
	KindPool = "Pool"
)

// SummaryLimit is how many problems Summarize lists before "and N more",
// which keeps condition messages and events readable for big pools.
const SummaryLimit = 20

// Problem is something a backup or restore reports about one object: a
// conflict, an object skipped, or a note on what was changed and why.
type Problem struct {
	// Kind of the object (Kind* constants).
	Kind string `json:"kind"`
	// Name of the object.
	Name string `json:"name"`
	// Message says what happened, in a sentence fit for a condition.
	Message string `json:"message"`
}

// String is "Kind name: message".
func (p Problem) String() string {
	return p.Kind + " " + p.Name + ": " + p.Message
}

// Summarize lists at most limit problems (SummaryLimit when limit <= 0),
// separated by "; ", followed by "; and N more" when some were left out.
func Summarize(problems []Problem, limit int) string {
	if limit <= 0 {
		limit = SummaryLimit
	}
	var b strings.Builder
	for i, p := range problems {
		if i == limit {
			fmt.Fprintf(&b, "; and %d more", len(problems)-limit)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

var kindRank = map[string]int{
	KindSecret: 1, KindStorageRepository: 2, KindVirtualDisk: 3, KindVirtualMachine: 4, KindHost: 5, KindPool: 6,
}

// sortProblems orders problems by kind, in creation order, then by name.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(kindRank[a.Kind], kindRank[b.Kind]), strings.Compare(a.Name, b.Name))
	})
}
