package controllers

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// What the VirtualAppliance controller and placement both read of a vApp's
// members: which appliance a VM names, whether it should run, and since when
// it runs as the vApp recorded it.

// IndexApplianceRef indexes VMs by the VirtualAppliance they name.
const IndexApplianceRef = ".spec.applianceRef.name"

// applianceOf is the vApp a VM names in spec.applianceRef ("" if none).
func applianceOf(vm *vpoolv1alpha1.VirtualMachine) string {
	if vm.Spec.ApplianceRef == nil {
		return ""
	}
	return vm.Spec.ApplianceRef.Name
}

// heldAfterReset reports whether a VM stays Halted after its host failed,
// whatever its spec.powerState says: restartPriority DoNotRestart, reset at
// its current generation. It starts again only after a person changes its
// spec, so it holds no vApp group back.
func heldAfterReset(vm *vpoolv1alpha1.VirtualMachine) bool {
	reset := vm.Status.LastReset
	return vm.Spec.HA.RestartPriority == vpoolv1alpha1.RestartNever && reset != nil && reset.Generation == vm.Generation
}

// shouldRun reports whether a vApp member counts in its start order: its
// spec.powerState is Running and the operator means to run it.
func shouldRun(vm *vpoolv1alpha1.VirtualMachine) bool {
	return vm.Spec.PowerState == vpoolv1alpha1.DesiredRunning && !heldAfterReset(vm)
}

// runningSince is when the VM started its current run, as rec (the vApp's
// record of it) says, or nil when the record is not of this run: the VM does
// not run, runs on another host than recorded, or was reset (its host
// failed) after the record was made.
func runningSince(vm *vpoolv1alpha1.VirtualMachine, rec *vpoolv1alpha1.ApplianceMember) *metav1.MicroTime {
	if rec == nil || rec.RunningSince == nil || vm.Status.PowerState != vpoolv1alpha1.PowerRunning ||
		rec.PowerState != vpoolv1alpha1.PowerRunning || rec.ResidentOn != vm.Status.ResidentOn {
		return nil
	}
	if at := resetAt(vm); !at.IsZero() && !rec.RunningSince.After(at) {
		return nil
	}
	return rec.RunningSince
}

// resetAt is when the VM was last reset after a host failure (zero: never),
// to the microsecond when recorded so.
func resetAt(vm *vpoolv1alpha1.VirtualMachine) time.Time {
	reset := vm.Status.LastReset
	switch {
	case reset == nil:
		return time.Time{}
	case reset.PreciseAt != nil:
		return reset.PreciseAt.Time
	}
	return reset.At.Time
}

// memberOf is the vApp's record of a VM, nil if it has none.
func memberOf(app *vpoolv1alpha1.VirtualAppliance, vm string) *vpoolv1alpha1.ApplianceMember {
	for i := range app.Status.Members {
		if app.Status.Members[i].Name == vm {
			return &app.Status.Members[i]
		}
	}
	return nil
}

// vmReadyReason is the reason of a VM's Ready condition when it was decided
// for the VM's current generation, "" otherwise.
func vmReadyReason(vm *vpoolv1alpha1.VirtualMachine) string {
	c := meta.FindStatusCondition(vm.Status.Conditions, vpoolv1alpha1.ConditionReady)
	if c == nil || c.ObservedGeneration != vm.Generation {
		return ""
	}
	return c.Reason
}

// appliancesOfVM maps a VM to the vApp it names; on an update, the handler
// calls it for the old and the new VM, so a vApp a VM leaves hears of it.
func appliancesOfVM(_ context.Context, obj client.Object) []reconcile.Request {
	vm, ok := obj.(*vpoolv1alpha1.VirtualMachine)
	if !ok || applianceOf(vm) == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: vm.Namespace, Name: applianceOf(vm)}}}
}

// memberChanged passes the VM events a vApp's status depends on: a VM that
// appears or goes naming a vApp, and updates of a member's appliance, spec,
// placement, power state, reset or Ready reason.
func memberChanged() predicate.Funcs {
	p := onChange(func(o, n *vpoolv1alpha1.VirtualMachine) bool {
		if applianceOf(o) == "" && applianceOf(n) == "" {
			return false
		}
		return applianceOf(o) != applianceOf(n) || o.Generation != n.Generation ||
			o.Status.PowerState != n.Status.PowerState || o.Status.ResidentOn != n.Status.ResidentOn ||
			!resetAt(o).Equal(resetAt(n)) || vmReadyReason(o) != vmReadyReason(n)
	})
	p.CreateFunc = func(e event.CreateEvent) bool {
		vm, ok := e.Object.(*vpoolv1alpha1.VirtualMachine)
		return ok && applianceOf(vm) != ""
	}
	return p
}
