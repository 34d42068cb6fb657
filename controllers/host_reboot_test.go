package controllers_test

import (
	"testing"

	. "github.com/onsi/gomega"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/placement"
)

// A host that comes back with a new boot before anyone fenced it (HA off:
// Unreachable, then Live again) runs none of the VMs placed on its earlier
// boot: they ended with it. Each is reset (HostRebooted), its locks
// released, and placed again, on the new boot.
func TestVMsOfAnEndedBootArePlacedAgain(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{ha: false, timeout: timeout, master: "h1"}, "h1", "h2")
	createVDI(t, f.ns, "p", "a-root", "nfs")
	createVM(t, f.ns, "p", "a", withDisk("a-root"), withAffinity("h1"))
	g.Eventually(runningOn(f.ns, "a"), wait, poll).Should(Equal("h1"))
	oldBoot := getVM(g, f.ns, "a").Status.ResidentBootID
	g.Expect(oldBoot).NotTo(BeEmpty())

	// The host reboots: its agent dies with its VMs, and a new boot's agent
	// starts on it.
	f.agents["h1"].Kill()
	f.agents["h1"] = startAgent(t, f.ns, "h1", interval, f.drivers["h1"])
	newBoot := f.agents["h1"].BootID()
	g.Eventually(func(g Gomega) {
		vm := getVM(g, f.ns, "a")
		g.Expect(vm.Status.PowerState).To(Equal(vpoolv1alpha1.PowerRunning))
		g.Expect(vm.Status.ResidentOn).To(Equal("h1"))
		g.Expect(vm.Status.ResidentBootID).To(Equal(newBoot))
		g.Expect(vm.Status.LastReset).NotTo(BeNil())
		g.Expect(vm.Status.LastReset.Host).To(Equal("h1"))
	}, wait, poll).Should(Succeed(), "the VM runs again on h1's new boot")
	g.Eventually(eventsOf(f.ns, "a"), wait, poll).Should(ContainElement(placement.ReasonHostRebooted))
	vdi := getVDI(g, f.ns, "a-root")
	g.Expect(vdi.Status.Lock).NotTo(BeNil())
	g.Expect(vdi.Status.Lock.BootID).To(Equal(newBoot), "the lock is taken again for the new boot")
}
