// Package controllers holds one reconciler per poolkeeper kind. Each gathers
// the state it needs, calls pure decision functions from internal/, and writes
// the result to status; none of them decides anything destructive inline.
package controllers
