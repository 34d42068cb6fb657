// Package fencing decides, from observed state and the time, what happens to a
// host whose heartbeat stopped: the host phase machine (Pending, Live,
// Unreachable, Fencing, Fenced, Forgotten), the ordered chain of checks that
// must all pass before a fence starts (storm guard, concurrency budget,
// fencing method), and the steps of a Redfish power-off. It performs no I/O:
// the Host controller gathers the inputs, calls these functions and carries
// out the result, re-reading the heartbeat Lease from the API server before
// any step that enters Fencing or Fenced.
package fencing
