package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

const hostForgetLong = `Forget a host: xe host-forget. The operator makes sure the host is down (it
fences it, or takes your word for a Manual host), resets its VMs to Halted
(xe vm-reset-powerstate), releases its VDI locks (resetvdis.py) and removes
it from the pool; VMs that should run start on another host. A forgotten
host never comes back under the same object: add it again as a new Host.

The command prints the plan (the VMs to be reset, the locks to be released,
what happens to the master) and asks for confirmation; --yes confirms for
scripts. Answering anything but "yes" (or "y") changes nothing. It then sets
spec.state: Forgotten on the Host. The operator refuses to forget a host that
still heartbeats, and says why in the Host's Ready condition. Until the
operator begins the forget (status.forgetStartedAt), setting spec.state back
to Active withdraws it.

Examples:
  kubectl poolkeeper host-forget xen-2
  kubectl poolkeeper host-forget xen-2 --yes --wait`

type hostForgetFlags struct {
	yes     bool
	wait    bool
	timeout time.Duration
}

func newHostForgetCommand(o *options) *cobra.Command {
	var f hostForgetFlags
	cmd := &cobra.Command{
		Use:   "host-forget HOST",
		Short: "Forget a dead host, after a plan and a confirmation (xe host-forget)",
		Long:  hostForgetLong,
		Args:  exactArgs(1, "HOST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.connect(o)
			if err != nil {
				return err
			}
			return runHostForget(cmd.Context(), o, c, ns, args[0], f)
		},
	}
	cmd.Flags().BoolVarP(&f.yes, "yes", "y", false, "Do not ask for confirmation.")
	cmd.Flags().BoolVar(&f.wait, "wait", false, "Wait until the host is forgotten.")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Minute, "How long --wait waits.")
	return cmd
}

// forgetPlan is what forgetting a host will do; -o json|yaml prints it.
type forgetPlan struct {
	Namespace     string     `json:"namespace"`
	Pool          string     `json:"pool"`
	Host          string     `json:"host"`
	Phase         string     `json:"phase"`
	FencingMethod string     `json:"fencingMethod"`
	Fencing       string     `json:"fencing"`
	VMsToReset    []forgetVM `json:"vmsToReset"`
	LocksReleased []string   `json:"locksToRelease"`
	Master        string     `json:"master"`
	Warnings      []string   `json:"warnings,omitempty"`
	Confirmed     bool       `json:"confirmed"`
	AlreadyAsked  bool       `json:"alreadyForgotten,omitempty"`
	Result        string     `json:"result,omitempty"`
}

type forgetVM struct {
	Name       string `json:"name"`
	PowerState string `json:"powerState,omitempty"`
	Then       string `json:"then"`
}

func newForgetPlan(po *poolObjects, h *vpoolv1alpha1.Host) *forgetPlan {
	p := &forgetPlan{Namespace: h.Namespace, Pool: po.pool.Name, Host: h.Name, Phase: string(h.Status.Phase),
		FencingMethod: string(h.Spec.Fencing.Method), VMsToReset: []forgetVM{}, LocksReleased: []string{},
		AlreadyAsked: h.Spec.State == vpoolv1alpha1.HostForgotten}
	if p.FencingMethod == "" {
		p.FencingMethod = string(vpoolv1alpha1.FencingAgent)
	}
	if p.Phase == "" {
		p.Phase = string(vpoolv1alpha1.HostPhasePending)
	}
	p.Fencing = fencingStep(h)
	switch vpoolv1alpha1.HostPhase(p.Phase) {
	case vpoolv1alpha1.HostPhaseLive, vpoolv1alpha1.HostPhasePending:
		p.Warnings = append(p.Warnings, fmt.Sprintf("host %s is %s: the operator refuses to forget a host that still heartbeats; "+
			"it waits, and says so in the Host's Ready condition, until the host stops", h.Name, p.Phase))
	}
	ha := po.pool.Spec.HA.Enabled
	for _, vm := range po.vmsOn(h.Name) {
		then := "stays Halted (spec.powerState " + string(vm.Spec.PowerState) + ")"
		if vm.Spec.PowerState == vpoolv1alpha1.DesiredRunning {
			then = "started on another Live host that fits it (spec.powerState Running)"
		}
		p.VMsToReset = append(p.VMsToReset, forgetVM{Name: vm.Name, PowerState: string(vm.Status.PowerState), Then: then})
	}
	for _, d := range po.locksOf(h.Name) {
		p.LocksReleased = append(p.LocksReleased, d.Name)
	}
	switch {
	case po.pool.Status.Master != h.Name:
		p.Master = fmt.Sprintf("none: the master is %s", orNone(po.pool.Status.Master))
	case ha:
		p.Master = "host " + h.Name + " is the master: with HA on a new master is elected, then the host is forgotten"
	default:
		p.Master = "host " + h.Name + " is the master and HA is off: it stays Fenced, not forgotten, until another master is in place " +
			"(kubectl poolkeeper designate-master HOST)"
		p.Warnings = append(p.Warnings, "the forget waits for a new master: run kubectl poolkeeper designate-master with a Live member")
	}
	return p
}

func fencingStep(h *vpoolv1alpha1.Host) string {
	switch h.Status.Phase {
	case vpoolv1alpha1.HostPhaseFenced, vpoolv1alpha1.HostPhaseForgotten:
		return "already fenced"
	}
	switch h.Spec.Fencing.Method {
	case vpoolv1alpha1.FencingManual:
		return "Manual: nobody can fence this host; by confirming you state that it is down (powered off or cut off for good)"
	case vpoolv1alpha1.FencingRedfish:
		return "Redfish: the operator powers it off through its BMC (ForceOff) and waits for PowerState Off"
	}
	return "Agent: the operator waits for the safe time, when the host's watchdog has reset it"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (p *forgetPlan) print(out io.Writer) {
	fmt.Fprintf(out, "Plan for xe host-forget of host %s (pool %s/%s, phase %s):\n", p.Host, p.Namespace, p.Pool, p.Phase)
	fmt.Fprintf(out, "  fencing:  %s\n", p.Fencing)
	if len(p.VMsToReset) == 0 {
		fmt.Fprintln(out, "  VMs:      none recorded on the host")
	}
	for _, vm := range p.VMsToReset {
		fmt.Fprintf(out, "  VM %s (%s): reset to Halted (vm-reset-powerstate), then %s\n", vm.Name, orNone(vm.PowerState), vm.Then)
	}
	if len(p.LocksReleased) == 0 {
		fmt.Fprintln(out, "  locks:    none held")
	} else {
		fmt.Fprintf(out, "  locks:    VDI RW locks released: %s\n", strings.Join(p.LocksReleased, ", "))
	}
	fmt.Fprintf(out, "  master:   %s\n", p.Master)
	for _, w := range p.Warnings {
		fmt.Fprintf(out, "  WARNING:  %s\n", w)
	}
}

func runHostForget(ctx context.Context, o *options, c client.Client, ns, name string, f hostForgetFlags) error {
	po, h, err := poolOfHost(ctx, c, ns, name)
	if err != nil {
		return err
	}
	plan := newForgetPlan(po, h)
	if plan.AlreadyAsked {
		plan.Result = "host " + name + " is already being forgotten (spec.state Forgotten)"
		return reportForget(o, plan, nil)
	}
	if o.output == "table" {
		plan.print(o.out)
	}
	if !f.yes {
		ok, err := confirm(o, fmt.Sprintf("Forget host %s? It comes back only as a new Host. Type yes to go on: ", name))
		if err != nil {
			return err
		}
		if !ok {
			plan.Result = "not confirmed: nothing changed"
			return reportForget(o, plan, errors.New("host-forget not confirmed: nothing changed"))
		}
	}
	plan.Confirmed = true
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"state":"Forgotten"}}`))
	if err := c.Patch(ctx, h, patch); err != nil {
		return fmt.Errorf("setting spec.state Forgotten on Host %s/%s: %w", ns, name, err)
	}
	plan.Result = "spec.state set to Forgotten"
	if f.wait {
		if err := waitForgotten(ctx, o, c, ns, name, f.timeout); err != nil {
			return reportForget(o, plan, err)
		}
		plan.Result = "forgotten"
	}
	return reportForget(o, plan, nil)
}

func reportForget(o *options, plan *forgetPlan, err error) error {
	if done, perr := printStructured(o, plan); done {
		if perr != nil {
			return perr
		}
		return err
	}
	if err == nil {
		fmt.Fprintf(o.out, "host/%s: %s\n", plan.Host, plan.Result)
	}
	return err
}

// confirm asks on stderr and reads one line; only yes or y confirms.
func confirm(o *options, prompt string) (bool, error) {
	fmt.Fprint(o.errOut, prompt)
	line, err := bufio.NewReader(o.in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading the confirmation: %w", err)
	}
	if errors.Is(err, io.EOF) && line == "" {
		fmt.Fprintln(o.errOut)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// waitForgotten waits until the Host is in phase Forgotten or gone.
func waitForgotten(ctx context.Context, o *options, c client.Client, ns, name string, timeout time.Duration) error {
	return poll(ctx, o, timeout, func() (bool, string, error) {
		h := &vpoolv1alpha1.Host{}
		switch err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, h); {
		case apierrors.IsNotFound(err):
			return true, "", nil
		case err != nil:
			return false, "", err
		}
		ready := conditionOf(h.Status.Conditions, vpoolv1alpha1.ConditionReady)
		return h.Status.Phase == vpoolv1alpha1.HostPhaseForgotten, fmt.Sprintf("host %s is %s%s", name, h.Status.Phase, because(ready)), nil
	})
}

// poll calls check every o.poll until it reports done, fails, or timeout
// passes; the error then says what check last saw.
func poll(ctx context.Context, o *options, timeout time.Duration, check func() (bool, string, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		done, last, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s: %s", timeout, last)
		case <-time.After(o.poll):
		}
	}
}
