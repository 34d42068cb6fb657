package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// A vApp's record of when a member started counts only for the member's
// current run: after an HA restart (a reset, another host) or a stop, the
// next group's startDelay counts from the new start, never the old one.
func TestRunningSinceIsOfTheCurrentRun(t *testing.T) {
	started := time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC)
	record := &vpoolv1alpha1.ApplianceMember{Name: "db", PowerState: vpoolv1alpha1.PowerRunning, ResidentOn: "h1",
		RunningSince: &metav1.MicroTime{Time: started}}
	vmOn := func(host string, power vpoolv1alpha1.PowerState, mutate ...func(*vpoolv1alpha1.VirtualMachine)) *vpoolv1alpha1.VirtualMachine {
		vm := &vpoolv1alpha1.VirtualMachine{}
		vm.Status.PowerState, vm.Status.ResidentOn = power, host
		for _, f := range mutate {
			f(vm)
		}
		return vm
	}
	resetAt := func(at time.Time) func(*vpoolv1alpha1.VirtualMachine) {
		return func(vm *vpoolv1alpha1.VirtualMachine) {
			vm.Status.LastReset = &vpoolv1alpha1.VMReset{Host: "h1", At: metav1.NewTime(at.Truncate(time.Second)),
				PreciseAt: &metav1.MicroTime{Time: at}}
		}
	}
	cases := map[string]struct {
		vm     *vpoolv1alpha1.VirtualMachine
		record *vpoolv1alpha1.ApplianceMember
		kept   bool
	}{
		"the same run":                        {vmOn("h1", vpoolv1alpha1.PowerRunning), record, true},
		"no record":                           {vmOn("h1", vpoolv1alpha1.PowerRunning), nil, false},
		"not running any more":                {vmOn("h1", vpoolv1alpha1.PowerHalted), record, false},
		"running on another host":             {vmOn("h2", vpoolv1alpha1.PowerRunning), record, false},
		"reset after the record, same host":   {vmOn("h1", vpoolv1alpha1.PowerRunning, resetAt(started.Add(time.Millisecond))), record, false},
		"reset before the record (older run)": {vmOn("h1", vpoolv1alpha1.PowerRunning, resetAt(started.Add(-time.Minute))), record, true},
		"a record of a VM not seen running": {vmOn("h1", vpoolv1alpha1.PowerRunning),
			&vpoolv1alpha1.ApplianceMember{Name: "db", PowerState: vpoolv1alpha1.PowerHalted, RunningSince: record.RunningSince}, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			got := runningSince(tc.vm, tc.record)
			if !tc.kept {
				g.Expect(got).To(BeNil())
				return
			}
			g.Expect(got).To(HaveValue(Equal(*record.RunningSince)))
		})
	}
}

// The vApp records a member's start once: the time it was first seen
// running on its host, kept while that run lasts, and a new time for a new
// run; a member that does not run has none.
func TestApplianceMembersKeepTheirStart(t *testing.T) {
	g := NewWithT(t)
	first := metav1.NewMicroTime(time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC))
	later := metav1.NewMicroTime(first.Add(time.Minute))
	app := &vpoolv1alpha1.VirtualAppliance{}
	app.Spec.PoolRef.Name = "p"
	vm := func(name, pool, host string, power vpoolv1alpha1.PowerState) *vpoolv1alpha1.VirtualMachine {
		v := &vpoolv1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: name}}
		v.Spec.PoolRef.Name, v.Spec.PowerState, v.Spec.StartOrder = pool, vpoolv1alpha1.DesiredRunning, 10
		v.Status.PowerState, v.Status.ResidentOn = power, host
		return v
	}
	vms := map[string]*vpoolv1alpha1.VirtualMachine{
		"web": vm("web", "p", "h1", vpoolv1alpha1.PowerRunning),
		"db":  vm("db", "p", "", vpoolv1alpha1.PowerHalted),
		"odd": vm("odd", "q", "h9", vpoolv1alpha1.PowerRunning),
	}
	members, foreign := applianceMembers(app, vms, first)
	g.Expect(foreign).To(Equal([]string{"odd"}))
	g.Expect(members).To(Equal([]vpoolv1alpha1.ApplianceMember{
		{Name: "db", StartOrder: 10, DesiredPowerState: vpoolv1alpha1.DesiredRunning, PowerState: vpoolv1alpha1.PowerHalted},
		{Name: "web", StartOrder: 10, DesiredPowerState: vpoolv1alpha1.DesiredRunning, PowerState: vpoolv1alpha1.PowerRunning,
			ResidentOn: "h1", RunningSince: &first},
	}))

	app.Status.Members = members
	again, _ := applianceMembers(app, vms, later)
	g.Expect(again[1].RunningSince).To(HaveValue(Equal(first)), "the same run keeps its start")

	vms["web"].Status.ResidentOn = "h2" // restarted elsewhere after its host failed
	moved, _ := applianceMembers(app, vms, later)
	g.Expect(moved[1].RunningSince).To(HaveValue(Equal(later)), "a new run, a new start")
}
