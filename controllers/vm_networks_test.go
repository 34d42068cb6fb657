package controllers_test

import (
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/placement"
)

// A VM runs only on a host that offers every network its interfaces name
// (the seed's "right NICs with the right names"): while none does, its
// Scheduled condition names the network; once a host offers it, the VM runs
// there, with its UUID and a generated MAC address kept in status.
func TestVMWaitsForAHostWithItsNetwork(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout, master: "h1"}, "h1", "h2")
	createVDI(t, f.ns, "p", "web-root", "nfs")
	createVM(t, f.ns, "p", "web", withDisk("web-root"), withAffinity("h1"), func(vm *vpoolv1alpha1.VirtualMachine) {
		vm.Spec.Interfaces = []vpoolv1alpha1.VMInterface{{Name: "eth0", Network: "lab"}}
	})
	g.Eventually(func(g Gomega) {
		c := conditionOf(f.ns, "web", vpoolv1alpha1.VMScheduled)(g)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(placement.ReasonNetworkUnavailable))
		g.Expect(c.Message).To(ContainSubstring("no Live host offers network lab"))
	}, wait, poll).Should(Succeed())
	g.Expect(runningOn(f.ns, "web")(g)).To(BeEmpty())

	f.drivers["h2"].SetNetworks("default", "lab")
	g.Eventually(runningOn(f.ns, "web"), wait, poll).Should(Equal("h2"), "h2 offers lab now; h1, the preferred host, does not")
	vm := getVM(g, f.ns, "web")
	g.Expect(vm.Status.UUID).To(Equal(string(vm.UID)))
	g.Expect(vm.Status.Interfaces).To(HaveLen(1))
	g.Expect(vm.Status.Interfaces[0].Name).To(Equal("eth0"))
	g.Expect(vm.Status.Interfaces[0].MACAddress).To(MatchRegexp(`^52:54(:[0-9a-f]{2}){4}$`))
	g.Expect(getHost(g, f.ns, "h2").Status.Networks).To(Equal([]string{"default", "lab"}))
}
