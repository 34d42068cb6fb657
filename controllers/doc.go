// Package controllers holds one reconciler per poolkeeper kind and, keyed by
// Pool beside the Pool reconciler, the placement, restore and backup schedule
// reconcilers. Each gathers the state it needs, calls pure decision functions
// from internal/, and writes the result to status; none of them decides
// anything destructive inline. Every status write goes through the status
// kit (internal/status): one deferred write per reconcile, events announced
// after it, and a write in the middle only where a step must be recorded
// before it is taken. The reconcilers keyed by Pool each write only their
// own part of its status (pool_status.go); helpers several kinds use live in
// files named for what they do (host_tally.go, disk_ready.go, boot_fenced.go,
// backup_store.go, pool_refs.go, predicates.go, messages.go, kstatus.go).
package controllers
