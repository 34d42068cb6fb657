package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// A VM gets its UUID once, and a MAC address for each interface without
// one that stays the same across reconciles, restarts elsewhere and
// recomputation; a MAC given in spec wins.
func TestAssignIdentity(t *testing.T) {
	g := NewWithT(t)
	vm := &vpoolv1alpha1.VirtualMachine{}
	vm.UID = types.UID("0b6f2c1e-3f7a-4d2e-9c1a-5f2e8d7c6b5a")
	vm.Spec.Interfaces = []vpoolv1alpha1.VMInterface{{Name: "eth0", Network: "default"},
		{Name: "eth1", Network: "storage", MACAddress: "52:54:00:aa:bb:cc"}}
	g.Expect(assignIdentity(vm)).To(BeTrue())
	g.Expect(vm.Status.UUID).To(Equal("0b6f2c1e-3f7a-4d2e-9c1a-5f2e8d7c6b5a"))
	g.Expect(vm.Status.Interfaces).To(HaveLen(2))
	mac := vm.Status.Interfaces[0].MACAddress
	g.Expect(mac).To(MatchRegexp(`^52:54:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$`))
	g.Expect(vm.Status.Interfaces[1]).To(Equal(vpoolv1alpha1.VMInterfaceStatus{Name: "eth1", MACAddress: "52:54:00:aa:bb:cc"}))
	g.Expect(assignIdentity(vm)).To(BeFalse(), "nothing changes on the next reconcile")

	// A new object (a restore) with the same UUID gets the same MAC; the
	// UUID in status is kept over a new UID.
	again := &vpoolv1alpha1.VirtualMachine{}
	again.UID = types.UID("another-uid")
	again.Status.UUID = vm.Status.UUID
	again.Spec.Interfaces = vm.Spec.Interfaces[:1]
	assignIdentity(again)
	g.Expect(again.Status.UUID).To(Equal(vm.Status.UUID))
	g.Expect(again.Status.Interfaces).To(Equal([]vpoolv1alpha1.VMInterfaceStatus{{Name: "eth0", MACAddress: mac}}))
	g.Expect(generatedMAC(vm.Status.UUID, "eth1")).NotTo(Equal(mac), "each interface its own address")

	// An interface removed from spec goes from status.
	vm.Spec.Interfaces = nil
	g.Expect(assignIdentity(vm)).To(BeTrue())
	g.Expect(vm.Status.Interfaces).To(BeNil())
}
