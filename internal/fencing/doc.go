// Package fencing decides, from observed state and the time, what happens to a
// host whose heartbeat stopped: the host phase machine (Pending, Live,
// Unreachable, Fencing, Fenced, Forgotten), the ordered chain of checks that
// must all pass before a fence starts (storm guard, concurrency budget,
// fencing method), the Heartbeat and Fenced conditions, and the fencing
// methods behind one interface, Fencer: Agent (agent.go), Redfish
// (redfish.go) and Manual (manual.go), resolved from the API enum value by a
// Registry. Adding a method is one file with its Fencer plus its enum value.
//
// The decisions perform no I/O. A Fencer's Step and Readiness act only
// through the Env the Host controller gives them (a Secret and the Lease
// read from the API server, the status written now, an event), so the
// controller keeps the safety rules for every method: the Lease is re-read
// before any step that enters Fencing or Fenced, and a method re-reads it
// through Env before acting.
package fencing
