package placement

import "fmt"

// Reasons of the VM reset decision (vm-reset-powerstate).
const (
	// ReasonHostUnreachable: the VM's host is Unreachable or being fenced;
	// nothing about the VM may change before the host is fenced.
	ReasonHostUnreachable = "HostUnreachable"
	// ReasonVMReset: the VM's host is fenced or forgotten; the VM's power
	// state is reset to Halted so it can start elsewhere.
	ReasonVMReset = "VMReset"
	// ReasonHostRebooted: the VM's host reports a boot other than the one
	// the VM was placed on: that boot ended, and the VM with it.
	ReasonHostRebooted = "HostRebooted"
)

// ResetAction is what happens to a VM whose host may have failed.
type ResetAction int

const (
	// ResetNone: the host is not known to have failed; the VM goes on as usual.
	ResetNone ResetAction = iota
	// ResetHold: the host is Unreachable or Fencing; the VM stays as it is
	// in status (Running, if it was) until the host is fenced or forgotten.
	ResetHold
	// ResetConfirm: the cache shows the host down, but not for the boot the
	// VM ran on; the host must be read again from the API server first.
	ResetConfirm
	// ResetNow: the host is down; the VM is reset to Halted.
	ResetNow
)

// ResidentHost is what the operator knows of the host a VM is resident on.
type ResidentHost struct {
	// Name is the host's name (status.residentOn).
	Name string
	// Phase is the host's phase, "Forgotten" when its Host object is gone (a
	// Host goes away only once forgotten).
	Phase string
	// Unreachable: the phase is Unreachable or Fencing.
	Unreachable bool
	// Down: the phase is Fenced or Forgotten.
	Down bool
	// BootFenced: the host is Fenced with the boot the VM runs on as the
	// boot it fenced, so even a lagging cache tells the truth (bootFenced).
	BootFenced bool
	// Confirmed: the API server, read just now, shows the host down.
	Confirmed bool
	// Boot is the boot ID the host's agent reports now; ResidentBoot the one
	// the VM was placed on (status.residentBootID). Only the agent holding
	// the host's Lease reports, and an agent runs only VMs placed on its own
	// boot: a host that reports another boot runs the VM no more.
	Boot, ResidentBoot string
}

// rebooted: the host reports a boot other than the VM's.
func (h ResidentHost) rebooted() bool {
	return h.Boot != "" && h.ResidentBoot != "" && h.Boot != h.ResidentBoot
}

// ResetDecision is what ResetVerdict decided, with the reason and message
// the VM's conditions and event carry.
type ResetDecision struct {
	Action          ResetAction
	Reason, Message string
}

// ResetVerdict decides what happens to a VM resident on h whose status
// power state is power. A VM is reset only once its host is certainly down.
func ResetVerdict(h ResidentHost, power string) ResetDecision {
	switch {
	case h.Unreachable:
		return ResetDecision{Action: ResetHold, Reason: ReasonHostUnreachable, Message: fmt.Sprintf(
			"host %s is %s: the VM stays %s in status until the host is fenced or forgotten", h.Name, h.Phase, power)}
	case !h.Down && h.rebooted():
		return ResetDecision{Action: ResetNow, Reason: ReasonHostRebooted, Message: fmt.Sprintf(
			"host %s rebooted: boot %s, which the VM was placed on, ended (the host runs boot %s): power state reset to Halted (vm-reset-powerstate); its disk locks are released next",
			h.Name, h.ResidentBoot, h.Boot)}
	case !h.Down:
		return ResetDecision{}
	case !h.BootFenced && !h.Confirmed:
		return ResetDecision{Action: ResetConfirm}
	}
	return ResetDecision{Action: ResetNow, Reason: ReasonVMReset, Message: fmt.Sprintf(
		"host %s is %s: power state reset to Halted (vm-reset-powerstate); its disk locks are released next", h.Name, h.Phase)}
}
