package backup_test

import (
	"encoding/json"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

func appliance(name, pool string, delay time.Duration) vpoolv1alpha1.VirtualAppliance {
	a := vpoolv1alpha1.VirtualAppliance{ObjectMeta: meta(name)}
	a.Spec = vpoolv1alpha1.VirtualApplianceSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: pool}, StartDelay: &metav1.Duration{Duration: delay}}
	a.Status.Members = []vpoolv1alpha1.ApplianceMember{{Name: "vm1", PowerState: vpoolv1alpha1.PowerRunning, ResidentOn: "h1",
		RunningSince: &metav1.MicroTime{Time: takenAt}}}
	return a
}

// A pool's vApps go into its dump (spec only), survive sealing, and a
// restore recreates them pointed at the restoring pool before the VMs that
// name them, which keep their applianceRef and startOrder.
func TestDumpAndRestoreKeepAppliances(t *testing.T) {
	g := NewWithT(t)
	w := newWorld()
	w.vms[0].Spec.ApplianceRef = &vpoolv1alpha1.LocalObjectReference{Name: "shop"}
	w.vms[0].Spec.StartOrder = 10
	gone := appliance("gone", "p", 0)
	gone.DeletionTimestamp = &metav1.Time{Time: takenAt}
	d := w.dump()
	d.AddAppliances(appliance("shop", "p", 30*time.Second), appliance("other-app", "other", time.Minute), gone)
	g.Expect(d.VirtualAppliances).To(Equal([]backup.VirtualApplianceRecord{{
		Metadata: backup.RecordMeta{Name: "shop"},
		Spec:     vpoolv1alpha1.VirtualApplianceSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"}, StartDelay: &metav1.Duration{Duration: 30 * time.Second}},
	}}), "only pool p's, without its status")
	g.Expect(d.Omitted).To(ContainElement(backup.Problem{Kind: backup.KindVirtualAppliance, Name: "gone", Message: "being deleted; not backed up"}))

	sealed, err := backup.Seal(d, key)
	g.Expect(err).NotTo(HaveOccurred())
	opened, err := backup.Open(sealed, key)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(opened.VirtualAppliances).To(Equal(d.VirtualAppliances))

	p, err := backup.Plan(opened, target(strict, false), backup.Existing{}, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.VirtualAppliances).To(HaveLen(1))
	app := p.VirtualAppliances[0]
	g.Expect(app.Namespace).To(Equal("dr"))
	g.Expect(app.Spec.PoolRef.Name).To(Equal("restored"))
	g.Expect(app.Spec.StartDelay.Duration).To(Equal(30 * time.Second))
	g.Expect(app.Annotations).To(HaveKeyWithValue(backup.AnnotationRestoredFrom, "b1"))
	order := planned(p)
	g.Expect(order).To(ContainElement("VirtualAppliance/shop"))
	first := func(prefix string) int {
		for i, o := range order {
			if len(o) > len(prefix) && o[:len(prefix)] == prefix {
				return i
			}
		}
		return -1
	}
	g.Expect(first("VirtualAppliance/")).To(BeNumerically("<", first("VirtualMachine/")), "vApps before the VMs that name them")
	g.Expect(first("VirtualDisk/")).To(BeNumerically("<", first("VirtualAppliance/")))
	for _, vm := range p.VirtualMachines {
		if vm.Name == "vm1" {
			g.Expect(vm.Spec.ApplianceRef).To(HaveValue(Equal(vpoolv1alpha1.LocalObjectReference{Name: "shop"})))
			g.Expect(vm.Spec.StartOrder).To(BeEquivalentTo(10))
		}
	}
	g.Expect(p.Summary()).To(ContainSubstring(", 1 VirtualAppliances"))
}

// A vApp whose name another pool holds in the target namespace conflicts;
// BestEffort skips it and the VMs that name it (they would name another
// pool's vApp); a VM naming a vApp found nowhere is restored with a note.
func TestPlanApplianceConflicts(t *testing.T) {
	g := NewWithT(t)
	w := newWorld()
	w.vms[0].Spec.ApplianceRef = &vpoolv1alpha1.LocalObjectReference{Name: "shop"}
	w.vms[1].Spec.ApplianceRef = &vpoolv1alpha1.LocalObjectReference{Name: "nowhere"}
	d := w.dump()
	d.AddAppliances(appliance("shop", "p", 0))
	taken := &vpoolv1alpha1.VirtualAppliance{ObjectMeta: restoredMeta("shop", "")}
	taken.Spec.PoolRef.Name = "other"

	p, err := backup.Plan(d, target(bestEffort, false), existingIn(taken), bestEffort)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.VirtualAppliances).To(BeEmpty())
	g.Expect(p.Conflicts).To(ContainElement(problem(backup.KindVirtualAppliance, "shop",
		"a VirtualAppliance of that name already exists in pool other")))
	g.Expect(p.Skipped).To(ContainElement(problem(backup.KindVirtualMachine, "vm1", "its VirtualAppliance shop is not restored")))
	g.Expect(p.Notes).To(ContainElement(problem(backup.KindVirtualMachine, "vm2",
		"its VirtualAppliance nowhere is neither in the backup nor in the namespace: the VM does not start until it exists")))
	g.Expect(planned(p)).To(ContainElement("VirtualMachine/vm2"))
	g.Expect(planned(p)).NotTo(ContainElement("VirtualMachine/vm1"))

	strictPlan, err := backup.Plan(d, target(strict, false), existingIn(taken), strict)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(strictPlan.Blocked()).To(BeTrue())
	g.Expect(strictPlan.Objects()).To(BeEmpty())
}

// A dump written before vApps existed has no virtualAppliances: it opens
// and restores as before.
func TestDumpWithoutAppliances(t *testing.T) {
	g := NewWithT(t)
	d := newWorld().dump()
	raw, err := json.Marshal(d)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(raw)).NotTo(ContainSubstring("virtualAppliances"))
	var old map[string]any
	g.Expect(json.Unmarshal(raw, &old)).To(Succeed())
	g.Expect(old).NotTo(HaveKey("virtualAppliances"))

	sealed, err := backup.Seal(d, key)
	g.Expect(err).NotTo(HaveOccurred())
	opened, err := backup.Open(sealed, key)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(opened.VirtualAppliances).To(BeNil())
	p, err := backup.Plan(opened, target(strict, false), backup.Existing{}, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(planned(p)).To(Equal(everything))
}
