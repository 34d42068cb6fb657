package controllers

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// assignIdentity gives a VM what it keeps wherever it runs: its UUID (set
// once: from vpoolv1alpha1.AnnotationUUID when it holds a uuid, as on a VM
// a restore or a recovery created, else from the object's UID) and a MAC address for every interface whose
// spec gives none. It reports whether it changed the status.
func assignIdentity(vm *vpoolv1alpha1.VirtualMachine) bool {
	changed := false
	if vm.Status.UUID == "" {
		// A restored or recovered VM keeps the uuid of its backup.
		if id := vm.Annotations[vpoolv1alpha1.AnnotationUUID]; uuid.Validate(id) == nil {
			vm.Status.UUID, changed = strings.ToLower(id), true
		} else if vm.UID != "" {
			vm.Status.UUID, changed = string(vm.UID), true
		}
	}
	want := make([]vpoolv1alpha1.VMInterfaceStatus, 0, len(vm.Spec.Interfaces))
	for _, nic := range vm.Spec.Interfaces {
		mac := nic.MACAddress
		if mac == "" {
			if i := slices.IndexFunc(vm.Status.Interfaces, func(s vpoolv1alpha1.VMInterfaceStatus) bool { return s.Name == nic.Name }); i >= 0 {
				mac = vm.Status.Interfaces[i].MACAddress
			} else {
				mac = generatedMAC(vm.Status.UUID, nic.Name)
			}
		}
		want = append(want, vpoolv1alpha1.VMInterfaceStatus{Name: nic.Name, MACAddress: mac})
	}
	if len(want) == 0 {
		want = nil
	}
	if !slices.Equal(want, vm.Status.Interfaces) {
		vm.Status.Interfaces, changed = want, true
	}
	return changed
}

// generatedMAC is a locally administered unicast MAC address (52:54, as
// QEMU's) derived from the VM's UUID and the interface's name: the same VM
// gets the same address again, wherever and whenever it is generated.
func generatedMAC(uuid, nic string) string {
	sum := sha256.Sum256([]byte(uuid + "/" + nic))
	return fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", sum[0], sum[1], sum[2], sum[3])
}
