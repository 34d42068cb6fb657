// Package placement decides where a VM runs and when its disks' RW locks may
// be released: host choice by capacity, affinity and local-SR pinning, the
// start order and restart priority gates, the lock release rule, the VM reset
// after a host failure (vm-reset-powerstate, ResetVerdict), and whether a
// pool is overcommitted. Pure functions of observed state, no I/O.
package placement
