package controllers

import (
	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/placement"
)

// hostCapacity is what a host offers, in placement units.
func hostCapacity(h *vpoolv1alpha1.Host) placement.Resources {
	return placement.Resources{MilliCPU: h.Spec.Capacity.CPU.MilliValue(), Memory: h.Spec.Capacity.Memory.Value()}
}

// vmNeed is what a VM needs, in placement units.
func vmNeed(vm *vpoolv1alpha1.VirtualMachine) placement.Resources {
	var r placement.Resources
	if vm.Spec.Resources.CPU != nil {
		r.MilliCPU = vm.Spec.Resources.CPU.MilliValue()
	}
	if vm.Spec.Resources.Memory != nil {
		r.Memory = vm.Spec.Resources.Memory.Value()
	}
	return r
}
