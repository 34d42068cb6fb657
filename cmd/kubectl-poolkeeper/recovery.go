package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

const recoverLong = `Recover chosen VMs and vApps from backups into POOL, xe vm-recover,
appliance-recover and vm-import metadata=true: create a Recovery and wait until
it is carried out (or stopped). For each chosen VM the operator takes the most
recent information found across the sources (VMs are matched by uuid), writes
its plan to status.plan before anything else, then recreates the SRs, the VDIs
(unlocked) and the VMs with their uuid; VMs whose backup had them Running are
started (--power-on=false recovers them Halted).

Sources: --from names PoolBackups of this namespace; --location with
--source-pool takes every backup of that pool found through a BackupLocation
(a DR site's read-only view of the primary's bucket). Choose VMs with --vm,
vApps with --appliance, or VMs by label with --selector.

Conflicts with VMs the pool already has: Fail (nothing is written), Skip, or
PreferNewer (failback: a Halted VM is replaced when the backup is newer).

Examples:
  kubectl poolkeeper recover dr --location primary --source-pool prod --appliance shop
  kubectl poolkeeper recover prod --from prod-nightly-20261201 --vm db --conflicts PreferNewer`

const drTestLong = `Test a DR failover, starting nothing: create a Recovery with spec.dryRun
into POOL and wait until the chosen VMs, their VDIs and SRs are recreated;
none is started and no VM of the pool is replaced. It prints what the test
recreated. Finish the test with --finish NAME: everything it created is
removed.

Examples:
  kubectl poolkeeper dr-test dr --location primary --source-pool prod --appliance shop
  kubectl poolkeeper dr-test --finish dr-test-20261201t120000z`

type recoverFlags struct {
	name       string
	from       []string
	location   string
	sourcePool string
	vms        []string
	appliances []string
	selector   string
	conflicts  string
	powerOn    bool
	wait       bool
	timeout    time.Duration
	finish     string
}

func (f *recoverFlags) bind(cmd *cobra.Command, dryRun bool) {
	fs := cmd.Flags()
	fs.StringVar(&f.name, "name", "", "Name of the Recovery (default: recover-<UTC time>, or dr-test-<UTC time>).")
	fs.StringSliceVar(&f.from, "from", nil, "PoolBackups to recover from (repeat or comma-separate).")
	fs.StringVar(&f.location, "location", "", "BackupLocation whose backups of --source-pool are sources.")
	fs.StringVar(&f.sourcePool, "source-pool", "", "The pool, at its site of origin, whose backups --location finds.")
	fs.StringSliceVar(&f.vms, "vm", nil, "VMs to recover, by name (repeat or comma-separate).")
	fs.StringSliceVar(&f.appliances, "appliance", nil, "vApps whose VMs are recovered whole (repeat or comma-separate).")
	fs.StringVar(&f.selector, "selector", "", "Recover the VMs whose labels match this selector (e.g. tier=web).")
	fs.StringVar(&f.conflicts, "conflicts", string(vpoolv1alpha1.ConflictsFail), "Fail, Skip or PreferNewer.")
	if !dryRun {
		fs.BoolVar(&f.powerOn, "power-on", true, "Start the VMs whose backup had them Running.")
	}
	fs.BoolVar(&f.wait, "wait", true, "Wait until the Recovery is carried out or stopped.")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "How long to wait.")
}

func newRecoverCommand(o *options) *cobra.Command {
	var f recoverFlags
	cmd := &cobra.Command{
		Use:   "recover POOL",
		Short: "Recover chosen VMs and vApps from backups (xe vm-recover, appliance-recover)",
		Long:  recoverLong,
		Args:  exactArgs(1, "POOL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.connect(o)
			if err != nil {
				return err
			}
			return runRecover(cmd.Context(), o, c, ns, args[0], f, false)
		},
	}
	f.bind(cmd, false)
	return cmd
}

func newDRTestCommand(o *options) *cobra.Command {
	var f recoverFlags
	cmd := &cobra.Command{
		Use:   "dr-test POOL | --finish NAME",
		Short: "Test a DR failover from backups, starting nothing, and clean it up (--finish)",
		Long:  drTestLong,
		Args: func(cmd *cobra.Command, args []string) error {
			if f.finish != "" {
				return exactArgs(0, "")(cmd, args)
			}
			return exactArgs(1, "POOL")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.connect(o)
			if err != nil {
				return err
			}
			if f.finish != "" {
				return runFinishDRTest(cmd.Context(), o, c, ns, f)
			}
			return runRecover(cmd.Context(), o, c, ns, args[0], f, true)
		},
	}
	f.bind(cmd, true)
	cmd.Flags().StringVar(&f.finish, "finish", "", "Finish the test failover of this Recovery: remove what it created.")
	return cmd
}

// recovery builds the Recovery the flags ask for, or says what is wrong.
func (f recoverFlags) recovery(ns, pool string, dryRun bool, now time.Time) (*vpoolv1alpha1.Recovery, error) {
	rec := &vpoolv1alpha1.Recovery{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: f.name}}
	if rec.Name == "" {
		prefix := "recover-"
		if dryRun {
			prefix = "dr-test-"
		}
		rec.Name = prefix + strings.ToLower(now.UTC().Format("20060102t150405z"))
	}
	rec.Spec.PoolRef.Name = pool
	for _, b := range f.from {
		rec.Spec.Sources = append(rec.Spec.Sources, vpoolv1alpha1.RecoverySource{BackupName: b})
	}
	switch {
	case (f.location == "") != (f.sourcePool == ""):
		return nil, errors.New("--location and --source-pool go together")
	case f.location != "":
		rec.Spec.Sources = append(rec.Spec.Sources, vpoolv1alpha1.RecoverySource{Location: f.location, Pool: f.sourcePool})
	}
	if len(rec.Spec.Sources) == 0 {
		return nil, errors.New("no source: name PoolBackups with --from, or a BackupLocation with --location and --source-pool")
	}
	rec.Spec.VirtualMachines, rec.Spec.Appliances = f.vms, f.appliances
	if rec.Spec.VirtualMachines == nil {
		rec.Spec.VirtualMachines = []string{}
	}
	if rec.Spec.Appliances == nil {
		rec.Spec.Appliances = []string{}
	}
	if f.selector != "" {
		sel, err := metav1.ParseToLabelSelector(f.selector)
		if err != nil {
			return nil, fmt.Errorf("--selector %q: %w", f.selector, err)
		}
		rec.Spec.Selector = sel
	}
	if len(f.vms)+len(f.appliances) == 0 && f.selector == "" {
		return nil, errors.New("choose VMs: --vm, --appliance or --selector")
	}
	modes := []string{string(vpoolv1alpha1.ConflictsFail), string(vpoolv1alpha1.ConflictsSkip), string(vpoolv1alpha1.ConflictsPreferNewer)}
	if !slices.Contains(modes, f.conflicts) {
		return nil, fmt.Errorf("--conflicts %q: use %s", f.conflicts, strings.Join(modes, ", "))
	}
	rec.Spec.Conflicts = vpoolv1alpha1.RecoveryConflicts(f.conflicts)
	rec.Spec.DryRun = dryRun
	if !dryRun {
		powerOn := f.powerOn
		rec.Spec.PowerOn = &powerOn
	}
	return rec, nil
}

// recoveryReport is a Recovery as recover and dr-test show it; -o json|yaml prints it.
type recoveryReport struct {
	Namespace string                       `json:"namespace"`
	Name      string                       `json:"name"`
	Pool      string                       `json:"pool"`
	DryRun    bool                         `json:"dryRun"`
	Ready     condition                    `json:"ready"`
	Plan      []vpoolv1alpha1.RecoveryItem `json:"plan,omitempty"`
	Results   []vpoolv1alpha1.RecoveryItem `json:"results,omitempty"`
}

func newRecoveryReport(rec *vpoolv1alpha1.Recovery) *recoveryReport {
	return &recoveryReport{Namespace: rec.Namespace, Name: rec.Name, Pool: rec.Spec.PoolRef.Name, DryRun: rec.Spec.DryRun,
		Ready: conditionOf(rec.Status.Conditions, vpoolv1alpha1.ConditionReady), Plan: rec.Status.Plan, Results: rec.Status.Results}
}

// recoverySettled: the Recovery's generation was carried out, or only a
// person can get it on (Stalled).
func recoverySettled(rec *vpoolv1alpha1.Recovery) (done, stalled bool) {
	ready := meta.FindStatusCondition(rec.Status.Conditions, vpoolv1alpha1.ConditionReady)
	if ready == nil || ready.ObservedGeneration != rec.Generation {
		return false, false
	}
	if ready.Status == metav1.ConditionTrue {
		return true, false
	}
	return false, meta.IsStatusConditionTrue(rec.Status.Conditions, "Stalled")
}

func runRecover(ctx context.Context, o *options, c client.Client, ns, pool string, f recoverFlags, dryRun bool) error {
	rec, err := f.recovery(ns, pool, dryRun, o.now())
	if err != nil {
		return usageError{err}
	}
	if _, err := getPool(ctx, c, ns, pool); err != nil {
		return err
	}
	if err := c.Create(ctx, rec); err != nil {
		return fmt.Errorf("creating Recovery %s/%s: %w", ns, rec.Name, err)
	}
	if o.output == "table" {
		fmt.Fprintf(o.out, "recovery/%s created: into pool %s from %s\n", rec.Name, pool, describeSources(rec.Spec.Sources))
	}
	if !f.wait {
		_, err := printStructured(o, newRecoveryReport(rec))
		return err
	}
	var stalled bool
	err = poll(ctx, o, f.timeout, func() (bool, string, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(rec), rec); err != nil {
			return false, "", err
		}
		var done bool
		done, stalled = recoverySettled(rec)
		return done || stalled, fmt.Sprintf("Recovery %s%s", rec.Name, because(conditionOf(rec.Status.Conditions, vpoolv1alpha1.ConditionReady))), nil
	})
	if err != nil {
		return err
	}
	r := newRecoveryReport(rec)
	var failed error
	if stalled {
		failed = fmt.Errorf("recovery %s/%s stopped%s", ns, rec.Name, because(r.Ready))
	}
	if done, err := printStructured(o, r); done {
		if err != nil {
			return err
		}
		return failed
	}
	printPlan(o, rec)
	if failed != nil {
		return failed
	}
	fmt.Fprintf(o.out, "recovery/%s %s: %s\n", rec.Name, r.Ready.Reason, r.Ready.Message)
	if dryRun {
		fmt.Fprintf(o.out, "finish the test with: kubectl poolkeeper dr-test --finish %s\n", rec.Name)
	}
	return nil
}

// printPlan prints the plan, one object a line, with what was done.
func printPlan(o *options, rec *vpoolv1alpha1.Recovery) {
	done := map[string]vpoolv1alpha1.RecoveryItem{}
	for _, it := range rec.Status.Results {
		done[it.Kind+"/"+it.Name] = it
	}
	if len(rec.Status.Plan) == 0 {
		return
	}
	t := newTable(o.out, "ACTION", "KIND", "NAME", "SOURCE", "DONE", "MESSAGE")
	for _, it := range rec.Status.Plan {
		state, msg := "-", it.Message
		if res, ok := done[it.Kind+"/"+it.Name]; ok {
			state = "no"
			if res.Done {
				state = "yes"
			}
			if res.Message != "" {
				msg = res.Message
			}
		}
		t.row(string(it.Action), it.Kind, it.Name, orNone(it.Source), state, msg)
	}
	_ = t.flush()
}

func describeSources(sources []vpoolv1alpha1.RecoverySource) string {
	parts := make([]string, 0, len(sources))
	for _, s := range sources {
		if s.BackupName != "" {
			parts = append(parts, "poolbackup/"+s.BackupName)
		} else {
			parts = append(parts, fmt.Sprintf("every backup of pool %s in backuplocation/%s", s.Pool, s.Location))
		}
	}
	return strings.Join(parts, ", ")
}

// runFinishDRTest marks a test failover finished and waits until what it
// created is removed.
func runFinishDRTest(ctx context.Context, o *options, c client.Client, ns string, f recoverFlags) error {
	rec := &vpoolv1alpha1.Recovery{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: f.finish}, rec); err != nil {
		return fmt.Errorf("reading Recovery %s/%s: %w", ns, f.finish, err)
	}
	if !rec.Spec.DryRun {
		return usageError{fmt.Errorf("recovery %s is not a test failover (spec.dryRun is false): there is nothing to finish", rec.Name)}
	}
	patch := client.MergeFrom(rec.DeepCopy())
	if rec.Annotations == nil {
		rec.Annotations = map[string]string{}
	}
	rec.Annotations[vpoolv1alpha1.AnnotationDRTestFinished] = "true"
	if err := c.Patch(ctx, rec, patch); err != nil {
		return fmt.Errorf("finishing the test failover %s/%s: %w", ns, rec.Name, err)
	}
	if f.wait {
		if err := poll(ctx, o, f.timeout, func() (bool, string, error) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(rec), rec); err != nil {
				return false, "", err
			}
			ready := conditionOf(rec.Status.Conditions, vpoolv1alpha1.ConditionReady)
			return ready.Reason == "DRTestCleanedUp", "Recovery " + rec.Name + because(ready), nil
		}); err != nil {
			return err
		}
	}
	r := newRecoveryReport(rec)
	if done, err := printStructured(o, r); done {
		return err
	}
	if f.wait {
		fmt.Fprintf(o.out, "recovery/%s %s: %s\n", rec.Name, r.Ready.Reason, r.Ready.Message)
	} else {
		fmt.Fprintf(o.out, "recovery/%s marked finished\n", rec.Name)
	}
	return nil
}
