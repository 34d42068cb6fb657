package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// A VM placed on a host, its disks locked, that does not run yet: Ready
// says Starting, or repeats why the host's agent does not start it (its
// Started condition) — only what the VM's current host said.
func TestStartingOnRepeatsTheAgentsWord(t *testing.T) {
	cases := []struct {
		name         string
		started      *metav1.Condition
		reason, want string
	}{
		{name: "nothing said yet", reason: ReasonStarting, want: "starting on h1"},
		{name: "the hypervisor refused",
			started: &metav1.Condition{Status: metav1.ConditionFalse, Reason: vpoolv1alpha1.ReasonVMStartFailed,
				Message: "host h1: starting it failed, tried again at every heartbeat: no kernel"},
			reason: vpoolv1alpha1.ReasonVMStartFailed, want: "starting on h1: starting it failed, tried again at every heartbeat: no kernel"},
		{name: "the agent waits",
			started: &metav1.Condition{Status: metav1.ConditionFalse, Reason: vpoolv1alpha1.ReasonVMWaitingOnHost,
				Message: "host h1: volume x not found"},
			reason: vpoolv1alpha1.ReasonVMWaitingOnHost, want: "starting on h1: volume x not found"},
		{name: "another host's word, from before the VM moved",
			started: &metav1.Condition{Status: metav1.ConditionFalse, Reason: vpoolv1alpha1.ReasonVMStartFailed,
				Message: "host h10: no kernel"},
			reason: ReasonStarting, want: "starting on h1"},
		{name: "running, as an earlier host said",
			started: &metav1.Condition{Status: metav1.ConditionTrue, Reason: vpoolv1alpha1.ReasonVMRunningOnHost,
				Message: "host h1: running"},
			reason: ReasonStarting, want: "starting on h1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			vm := &vpoolv1alpha1.VirtualMachine{}
			if c.started != nil {
				st := *c.started
				st.Type = vpoolv1alpha1.VMStarted
				meta.SetStatusCondition(&vm.Status.Conditions, st)
			}
			reason, msg := startingOn(vm, "h1")
			g.Expect(reason).To(Equal(c.reason))
			g.Expect(msg).To(Equal(c.want))
		})
	}
}
