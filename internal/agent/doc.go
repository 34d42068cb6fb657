// Package agent is the host agent: it renews its Host's heartbeat Lease,
// reports its boot ID, the pool epoch it follows and the VMs it runs, drives
// VMs through a Driver, and self-fences (stops every VM and exits) when it
// cannot renew its Lease within the watchdog deadline.
//
// Watchdog: the agent measures, on its monotonic clock, the time since the
// start of its last successful renewal. A renewal counts only if it completes
// before the current deadline. When liveness.SelfFenceAfter(T) passes without
// one, it stops every VM and Run returns ErrSelfFenced. The operator counts
// the host as fenced only at liveness.SafeAfter(T) = T + T/2 after the last
// renewal it observed, which is at least T/2 later; the agent refuses a
// heartbeat interval above T/4, so that gap covers one interval plus a T/4
// margin for stopping VMs.
package agent
