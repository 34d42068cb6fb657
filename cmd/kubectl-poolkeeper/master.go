package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

const designateMasterLong = `Make HOST the pool's master by setting the Pool's spec.master:

  - the master is Live: a planned hand-over, xe pool-designate-new-master;
  - the master is dead and HA is off: xe pool-emergency-transition-to-master
    on HOST, after which the operator re-points every member to it
    (xe pool-recover-slaves);
  - HA is on: a dead master is replaced automatically; spec.master is the
    master the pool prefers.

Every change of master is a new epoch (status.epoch). HOST must be a Live
host of the pool (or a Pending one, which the operator waits for).

Examples:
  kubectl poolkeeper designate-master xen-3
  kubectl poolkeeper designate-master xen-3 --wait`

type designateFlags struct {
	wait    bool
	timeout time.Duration
}

func newDesignateMasterCommand(o *options) *cobra.Command {
	var f designateFlags
	cmd := &cobra.Command{
		Use:   "designate-master HOST",
		Short: "Make HOST the master (xe pool-designate-new-master, pool-emergency-transition-to-master, pool-recover-slaves)",
		Long:  designateMasterLong,
		Args:  exactArgs(1, "HOST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.connect(o)
			if err != nil {
				return err
			}
			return runDesignateMaster(cmd.Context(), o, c, ns, args[0], f)
		},
	}
	cmd.Flags().BoolVar(&f.wait, "wait", false, "Wait until HOST is the master (status.master) at a new epoch.")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 5*time.Minute, "How long --wait waits.")
	return cmd
}

// designation is what designate-master did; -o json|yaml prints it.
type designation struct {
	Namespace  string `json:"namespace"`
	Pool       string `json:"pool"`
	Host       string `json:"host"`
	Transition string `json:"transition"`
	FromMaster string `json:"fromMaster,omitempty"`
	FromEpoch  int64  `json:"fromEpoch"`
	Epoch      int64  `json:"epoch,omitempty"`
	Result     string `json:"result"`
}

func runDesignateMaster(ctx context.Context, o *options, c client.Client, ns, name string, f designateFlags) error {
	po, h, err := poolOfHost(ctx, c, ns, name)
	if err != nil {
		return err
	}
	pool := po.pool
	d := &designation{Namespace: ns, Pool: pool.Name, Host: name, FromMaster: pool.Status.Master, FromEpoch: pool.Status.Epoch}
	switch h.Status.Phase {
	case vpoolv1alpha1.HostPhaseLive, vpoolv1alpha1.HostPhasePending, "":
	default:
		return fmt.Errorf("host %s is %s: only a Live host can become the master; pick another with kubectl poolkeeper status %s",
			name, h.Status.Phase, pool.Name)
	}
	if h.Spec.State == vpoolv1alpha1.HostForgotten || !h.DeletionTimestamp.IsZero() {
		return fmt.Errorf("host %s is being forgotten: it cannot become the master", name)
	}
	d.Transition = transition(po, name)
	if pool.Spec.Master != name {
		patch, err := json.Marshal(map[string]any{"spec": map[string]any{"master": name}})
		if err != nil {
			return err
		}
		if err := c.Patch(ctx, pool, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("setting spec.master of Pool %s/%s: %w", ns, pool.Name, err)
		}
	}
	d.Result = "spec.master set to " + name
	if pool.Status.Master == name {
		d.Result, d.Epoch = name+" is already the master", pool.Status.Epoch
	} else if f.wait {
		err := poll(ctx, o, f.timeout, func() (bool, string, error) {
			p, err := getPool(ctx, c, ns, pool.Name)
			if err != nil {
				return false, "", err
			}
			d.Epoch = p.Status.Epoch
			mc := conditionOf(p.Status.Conditions, vpoolv1alpha1.PoolMasterAvailable)
			return p.Status.Master == name && p.Status.Epoch > d.FromEpoch,
				fmt.Sprintf("master %s at epoch %d%s", orNone(p.Status.Master), p.Status.Epoch, because(mc)), nil
		})
		if err != nil {
			return err
		}
		d.Result = fmt.Sprintf("%s is the master at epoch %d", name, d.Epoch)
	}
	if done, err := printStructured(o, d); done {
		return err
	}
	fmt.Fprintf(o.out, "pool/%s: %s\n%s\n", pool.Name, d.Transition, d.Result)
	return nil
}

// transition says which xe operation setting spec.master stands for now.
func transition(po *poolObjects, host string) string {
	pool := po.pool
	cur := po.host(pool.Status.Master)
	switch {
	case pool.Status.Master == host:
		return "no change of master"
	case pool.Spec.HA.Enabled:
		return "HA is on: " + host + " becomes the preferred master (spec.master); the operator hands over while it is Live"
	case cur == nil || cur.Status.Phase != vpoolv1alpha1.HostPhaseLive:
		return fmt.Sprintf("the master %s is not Live and HA is off: emergency transition of %s to master "+
			"(xe pool-emergency-transition-to-master), then every member follows it (xe pool-recover-slaves)",
			orNone(pool.Status.Master), host)
	}
	return fmt.Sprintf("planned hand-over from %s to %s (xe pool-designate-new-master)", pool.Status.Master, host)
}
