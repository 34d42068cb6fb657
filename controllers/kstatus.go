package controllers

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/placement"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// What kstatus (Flux, Argo CD) reads of the VM, VirtualDisk and
// StorageRepository kinds, from the Ready condition decided for them:
// Reconciling while the operator moves the object towards its spec by
// itself, Stalled while a reference in the spec names nothing (or something
// of another pool) and only a person can fix it. The Host, Pool and
// PoolBackup rules are in their controllers (setHostProgress,
// setPoolProgress, setBackupProgress). The README's kstatus table says the
// same.

// vmWorking are the VM Ready reasons of work under way: locking disks and
// starting on the chosen host (its agent waiting for something of its own,
// or trying again at every heartbeat a start the hypervisor refused, Ready
// saying why), stopping, or reset for a restart elsewhere.
var vmWorking = map[string]bool{ReasonStarting: true, ReasonStopping: true, ReasonVMReset: true,
	vpoolv1alpha1.ReasonVMWaitingOnHost: true, vpoolv1alpha1.ReasonVMStartFailed: true}

// vmStalled are the VM Ready reasons only a person can clear.
var vmStalled = map[string]bool{vpoolv1alpha1.ReasonPoolNotFound: true, placement.ReasonDiskInOtherPool: true,
	placement.ReasonLocalDisksApart: true, placement.ReasonApplianceNotFound: true, placement.ReasonApplianceInOtherPool: true}

// srStalled are the StorageRepository Ready reasons only a person can clear.
var srStalled = map[string]bool{vpoolv1alpha1.ReasonPoolNotFound: true, ReasonSRHostNotFound: true, ReasonSRHostInOtherPool: true}

// readyProgress is the progress a Ready condition tells through the
// reasons of working and stalled; nothing while Ready is True.
func readyProgress(ready *metav1.Condition, working, stalled map[string]bool) status.Progress {
	if ready == nil || ready.Status == metav1.ConditionTrue {
		return status.Progress{}
	}
	return status.ProgressOf(ready, working[ready.Reason], stalled[ready.Reason])
}

// setVMProgress sets a VM's Reconciling and Stalled from its Ready.
func setVMProgress(vm *vpoolv1alpha1.VirtualMachine) {
	status.SetProgress(vm, readyProgress(status.Find(vm, vpoolv1alpha1.ConditionReady), vmWorking, vmStalled))
}

// setSRProgress sets an SR's Stalled from its Ready: a pool or host it
// names that does not exist, or a host of another pool. An SR whose host is
// down is not Ready and neither Reconciling nor Stalled: it waits for the host.
func setSRProgress(sr *vpoolv1alpha1.StorageRepository) {
	status.SetProgress(sr, readyProgress(status.Find(sr, vpoolv1alpha1.ConditionReady), nil, srStalled))
}
