// Package liveness decides whether a host is alive from the heartbeat
// renewals the operator itself observed, on its own clock.
//
// A host's agent renews a coordination.k8s.io Lease every heartbeat interval.
// The operator never trusts a time written by the host: the Tracker records,
// on the operator's clock, when it saw each Lease change. A host is stale once
// the heartbeat timeout T has passed since the last renewal observed (or
// since the operator first saw the Lease, after a restart).
//
// The timing contract between the agent's watchdog and the operator (see
// SelfFenceAfter and SafeAfter):
//
//	agent:    S = start of its last successful renewal (S <= the commit the operator observes, L)
//	          stops every VM at S + T when no later renewal has succeeded
//	operator: Unreachable at L + T; for Agent fencing, Fenced at L + T + T/2
//
// so the agent has stopped its VMs at least T/2 before the operator's safe
// time. The agent refuses a heartbeat interval above T/4, so that gap is at
// least one heartbeat interval plus a margin of T/4 for stopping the VMs.
package liveness
