package placement

import "fmt"

// Reasons of lock releases.
const (
	ReasonHolderFenced    = "HolderFenced"
	ReasonHaltedByHost    = "HaltedByHost"
	ReasonVMGone          = "VMGone"
	ReasonLockHeld        = "LockHeld"
	ReasonLockedElsewhere = "LockedByAnotherHost"
)

// HolderState is what the operator knows of a lock's holder host.
type HolderState int

const (
	// HolderLive: the host heartbeats (or is Pending/Unreachable/Fencing: not known down).
	HolderLive HolderState = iota
	// HolderDown: the host is Fenced or Forgotten (or its Host object is gone
	// after being forgotten): it certainly runs nothing.
	HolderDown
)

// LockedVM is what the operator knows of the VM a lock was taken for.
type LockedVM struct {
	Exists bool
	// ResidentOn and Running are the VM's status.
	ResidentOn string
	Running    bool
	// RunningOnHolder is true when the holder's agent reports the VM running.
	RunningOnHolder bool
}

// Release decides whether a VDI's RW lock held by host for a VM may be
// released: only after the holder is fenced or forgotten, or the VM on it was
// halted by its own host (it is no longer resident there and the host's agent
// does not report it running).
func Release(holder string, state HolderState, vm LockedVM) (release bool, reason, message string) {
	if state == HolderDown {
		return true, ReasonHolderFenced, fmt.Sprintf("host %s is fenced or forgotten: its lock is released (resetvdis)", holder)
	}
	if vm.RunningOnHolder {
		return false, ReasonLockHeld, fmt.Sprintf("held by host %s, which runs the VM", holder)
	}
	if !vm.Exists {
		return true, ReasonVMGone, fmt.Sprintf("the VM is gone and host %s does not run it", holder)
	}
	if vm.ResidentOn != holder && !vm.Running {
		return true, ReasonHaltedByHost, fmt.Sprintf("the VM was halted by host %s", holder)
	}
	return false, ReasonLockHeld, fmt.Sprintf("held by host %s", holder)
}
