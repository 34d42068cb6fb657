package controllers_test

import (
	"context"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// Under the agents' admission policy an agent heartbeats and reports its
// watchdog with its own identity, but may not write the operator's fields
// of its Host's status, nor another Host's status.
func TestAgentPolicyAllowsOnlyTheAgentsHostFields(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	installAgentPolicy(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	createHost(t, ns, "p", "h1")
	createHost(t, ns, "p", "h2")
	cfg := rest.CopyConfig(restConfig)
	// system:masters stands in for the agents' RBAC (config/agent/role.yaml):
	// the policy alone is under test.
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "poolkeeper:agent:" + ns + ":h1", Groups: []string{"system:masters"}}
	h1 := mustClient(t, cfg)
	writeStatus := func(name string, mutate func(*vpoolv1alpha1.Host)) error {
		h := &vpoolv1alpha1.Host{}
		if err := h1.Get(ctx, key(ns, name), h); err != nil {
			return err
		}
		patch := client.MergeFrom(h.DeepCopy())
		mutate(h)
		return h1.Status().Patch(ctx, h, patch)
	}
	// Each try changes observedGeneration, which the operator rewrites
	// anyway: a try that passed before the policy took effect harms nothing
	// and does not make the next one a no-op.
	g.Eventually(func() error {
		return writeStatus("h1", func(h *vpoolv1alpha1.Host) { h.Status.ObservedGeneration++ })
	}, wait, poll).Should(MatchError(ContainSubstring("the agent of host h1 may write only its own fields of the Host status")),
		"the operator's observedGeneration")
	g.Expect(writeStatus("h1", func(h *vpoolv1alpha1.Host) { h.Status.Phase = vpoolv1alpha1.HostPhaseLive })).To(
		MatchError(ContainSubstring("never the operator's")), "the operator's phase")
	g.Expect(writeStatus("h1", func(h *vpoolv1alpha1.Host) {
		h.Status.Fencing = &vpoolv1alpha1.FencingStatus{Method: vpoolv1alpha1.FencingAgent, Evidence: "forged"}
	})).To(MatchError(ContainSubstring("never the operator's")), "the operator's fence record")
	g.Expect(writeStatus("h2", func(h *vpoolv1alpha1.Host) {
		h.Status.Watchdog = &vpoolv1alpha1.WatchdogStatus{Kind: vpoolv1alpha1.WatchdogNone, BootID: "b"}
	})).To(MatchError(ContainSubstring("may write only its own Host status, not h2")), "another host's watchdog")

	startManager(t, ns, controllers.Options{})
	wd := emulatedWatchdog(t)
	startAgentConfig(t, agent.Config{Namespace: ns, Host: "h2", Interval: interval})
	a := agent.Config{RESTConfig: cfg, Namespace: ns, Host: "h1", Interval: interval, Driver: agent.NewSimDriver(),
		BootID: wd.BootID(), Watchdog: wd}
	ra, err := agent.New(a)
	g.Expect(err).NotTo(HaveOccurred())
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ra.Run(actx) }()
	t.Cleanup(func() { cancel(); <-done })
	g.Eventually(phaseOf(ns, "h1"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	g.Eventually(func(g Gomega) *vpoolv1alpha1.WatchdogStatus { return getHost(g, ns, "h1").Status.Watchdog }, wait, poll).Should(
		HaveField("BootID", wd.BootID()), "the agent's own report passes the policy")
	g.Expect(getHost(g, ns, "h1").Status.BootID).To(Equal(wd.BootID()))
}

// installAgentPolicy installs config/agent/policy.yaml in the test cluster
// for the test: it is cluster-wide, and matches only agent identities.
func installAgentPolicy(t *testing.T) {
	t.Helper()
	applyFile(t, k8s, filepath.Join(testutil.RepoRoot(), "config", "agent", "policy.yaml"))
	t.Cleanup(func() {
		ctx := context.Background()
		_ = k8s.Delete(ctx, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: agentPolicy}})
		_ = k8s.Delete(ctx, &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: agentPolicy}})
	})
}

// agentPolicy names the policy and binding of config/agent/policy.yaml.
const agentPolicy = "poolkeeper-agent-identity"

// Under the agents' admission policy an agent may write, of a VM resident on
// its host, only the power state and its own Started condition: never where
// the VM runs, nor the operator's conditions.
// (Not parallel: the policy is cluster-wide, and the Host test installs and
// removes it too.)
func TestAgentPolicyAllowsOnlyTheAgentsVMFields(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	installAgentPolicy(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	vm := &vpoolv1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vm-a"}}
	vm.Spec.PoolRef.Name = "p"
	vm.Spec.PowerState = vpoolv1alpha1.DesiredRunning
	g.Expect(k8s.Create(ctx, vm)).To(Succeed())
	vm.Status.ResidentOn, vm.Status.PowerState = "h1", vpoolv1alpha1.PowerHalted
	meta.SetStatusCondition(&vm.Status.Conditions, metav1.Condition{Type: vpoolv1alpha1.VMDisksLocked,
		Status: metav1.ConditionTrue, Reason: controllers.ReasonDisksLocked, Message: "locked for h1"})
	g.Expect(k8s.Status().Update(ctx, vm)).To(Succeed())

	cfg := rest.CopyConfig(restConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "poolkeeper:agent:" + ns + ":h1", Groups: []string{"system:masters"}}
	h1 := mustClient(t, cfg)
	writeStatus := func(mutate func(*vpoolv1alpha1.VirtualMachine)) error {
		v := &vpoolv1alpha1.VirtualMachine{}
		if err := h1.Get(ctx, key(ns, "vm-a"), v); err != nil {
			return err
		}
		patch := client.MergeFrom(v.DeepCopy())
		mutate(v)
		return h1.Status().Patch(ctx, v, patch)
	}
	// Until the policy takes effect a write passes: each try changes
	// observedGeneration, the operator's, which a try that passed leaves
	// harmless (and the next one no no-op).
	g.Eventually(func() error {
		return writeStatus(func(v *vpoolv1alpha1.VirtualMachine) { v.Status.ObservedGeneration++ })
	}, wait, poll).Should(MatchError(ContainSubstring("never the operator's fields")), "the operator's observedGeneration")
	g.Expect(writeStatus(func(v *vpoolv1alpha1.VirtualMachine) { v.Status.UUID = "6f1c0a53-0000-4000-8000-000000000001" })).To(
		MatchError(ContainSubstring("never the operator's fields")), "the VM's identity")
	g.Expect(writeStatus(func(v *vpoolv1alpha1.VirtualMachine) { v.Status.ResidentOn = "h2" })).To(
		MatchError(ContainSubstring("never the operator's fields")), "where the VM runs")
	g.Expect(writeStatus(func(v *vpoolv1alpha1.VirtualMachine) {
		meta.SetStatusCondition(&v.Status.Conditions, metav1.Condition{Type: vpoolv1alpha1.VMDisksLocked,
			Status: metav1.ConditionFalse, Reason: "Forged", Message: "forged"})
	})).To(MatchError(ContainSubstring("never the operator's fields")), "the operator's DisksLocked")

	g.Expect(writeStatus(func(v *vpoolv1alpha1.VirtualMachine) {
		v.Status.PowerState = vpoolv1alpha1.PowerRunning
		meta.SetStatusCondition(&v.Status.Conditions, metav1.Condition{Type: vpoolv1alpha1.VMStarted,
			Status: metav1.ConditionTrue, Reason: vpoolv1alpha1.ReasonVMRunningOnHost, Message: "host h1: running"})
	})).To(Succeed(), "the agent's own report")
	g.Expect(writeStatus(func(v *vpoolv1alpha1.VirtualMachine) {
		meta.SetStatusCondition(&v.Status.Conditions, metav1.Condition{Type: vpoolv1alpha1.VMStarted,
			Status: metav1.ConditionFalse, Reason: vpoolv1alpha1.ReasonVMStartFailed, Message: "host h1: refused"})
	})).To(Succeed(), "the agent's own condition, changed")
	got := &vpoolv1alpha1.VirtualMachine{}
	g.Expect(k8s.Get(ctx, key(ns, "vm-a"), got)).To(Succeed())
	g.Expect(got.Status.ResidentOn).To(Equal("h1"))
	g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, vpoolv1alpha1.VMDisksLocked)).To(BeTrue())
}
