package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
)

const statusLong = `The pool at a glance, as xe pool-list, host-list and vm-list show it: the
master and its epoch, every host with its phase, the age of its last
heartbeat (the renewal of its Lease), fencing progress and safe time, the VMs
it runs and the VDI locks it holds; the storm guard (FencingAllowed), the VDI
locks, and the last backup and its last verification. Without POOL, every
pool of the namespace.

Examples:
  kubectl poolkeeper status demo
  kubectl poolkeeper status -n pools -o json`

func newStatusCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "status [POOL]",
		Short: "Show a pool at a glance (xe pool-list, host-list, vm-list)",
		Long:  statusLong,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{fmt.Errorf("expected at most one POOL, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.connect(o)
			if err != nil {
				return err
			}
			names := args
			if len(names) == 0 {
				var pools vpoolv1alpha1.PoolList
				if err := c.List(cmd.Context(), &pools, client.InNamespace(ns)); err != nil {
					return fmt.Errorf("listing Pools in namespace %s: %w", ns, err)
				}
				for _, p := range pools.Items {
					names = append(names, p.Name)
				}
				slices.Sort(names)
				if len(names) == 0 {
					return fmt.Errorf("no Pool in namespace %s", ns)
				}
			}
			return runStatus(cmd.Context(), o, c, ns, names)
		},
	}
}

func runStatus(ctx context.Context, o *options, c client.Client, ns string, names []string) error {
	reports := make([]poolReport, 0, len(names))
	for _, name := range names {
		po, err := readPool(ctx, c, ns, name)
		if err != nil {
			return err
		}
		reports = append(reports, newPoolReport(po, o.now()))
	}
	var v any = reports
	if len(reports) == 1 {
		v = reports[0]
	}
	if done, err := printStructured(o, v); done {
		return err
	}
	for i := range reports {
		if i > 0 {
			fmt.Fprintln(o.out)
		}
		if err := reports[i].print(o.out, o.now()); err != nil {
			return err
		}
	}
	return nil
}

// poolReport is what status shows of a pool; -o json|yaml prints it as is.
type poolReport struct {
	Namespace        string               `json:"namespace"`
	Name             string               `json:"name"`
	Ready            condition            `json:"ready"`
	HAEnabled        bool                 `json:"haEnabled"`
	Master           string               `json:"master,omitempty"`
	RequestedMaster  string               `json:"requestedMaster,omitempty"`
	Epoch            int64                `json:"epoch"`
	HeartbeatTimeout string               `json:"heartbeatTimeout,omitempty"`
	FencingAllowed   condition            `json:"fencingAllowed"`
	Overcommitted    condition            `json:"overcommitted"`
	Hosts            []hostReport         `json:"hosts"`
	VMs              []vmReport           `json:"vms"`
	Locks            []lockReport         `json:"locks"`
	BackupSchedule   string               `json:"backupSchedule,omitempty"`
	NextBackup       *metav1.Time         `json:"nextBackup,omitempty"`
	LastBackup       *backupSummary       `json:"lastBackup,omitempty"`
	LastVerification *verificationSummary `json:"lastVerification,omitempty"`
}

type condition struct {
	Status  metav1.ConditionStatus `json:"status"`
	Reason  string                 `json:"reason,omitempty"`
	Message string                 `json:"message,omitempty"`
}

type hostReport struct {
	Name                string                        `json:"name"`
	Role                string                        `json:"role,omitempty"`
	Phase               string                        `json:"phase"`
	State               string                        `json:"state,omitempty"`
	LastRenewTime       *metav1.Time                  `json:"lastRenewTime,omitempty"`
	HeartbeatAgeSeconds *float64                      `json:"heartbeatAgeSeconds,omitempty"`
	Fencing             *vpoolv1alpha1.FencingStatus  `json:"fencing,omitempty"`
	Watchdog            *vpoolv1alpha1.WatchdogStatus `json:"watchdog,omitempty"`
	VMs                 []string                      `json:"vms"`
	Locks               int                           `json:"locks"`
	Ready               condition                     `json:"ready"`
}

type vmReport struct {
	Name       string    `json:"name"`
	Desired    string    `json:"desiredPowerState"`
	PowerState string    `json:"powerState,omitempty"`
	Host       string    `json:"host,omitempty"`
	Ready      condition `json:"ready"`
}

type lockReport struct {
	VirtualDisk    string       `json:"virtualDisk"`
	Host           string       `json:"host"`
	HostPhase      string       `json:"hostPhase,omitempty"`
	VirtualMachine string       `json:"virtualMachine,omitempty"`
	Since          *metav1.Time `json:"since,omitempty"`
}

type backupSummary struct {
	Name        string       `json:"name"`
	Phase       string       `json:"phase"`
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	SHA256      string       `json:"sha256,omitempty"`
	SizeBytes   int64        `json:"sizeBytes,omitempty"`
	Hosts       int32        `json:"hosts"`
	VMs         int32        `json:"vms"`
	Location    string       `json:"location,omitempty"`
}

type verificationSummary struct {
	Backup string      `json:"backup"`
	At     metav1.Time `json:"at"`
}

func conditionOf(conds []metav1.Condition, t string) condition {
	c := meta.FindStatusCondition(conds, t)
	if c == nil {
		return condition{Status: metav1.ConditionUnknown}
	}
	return condition{Status: c.Status, Reason: c.Reason, Message: c.Message}
}

func newPoolReport(po *poolObjects, now time.Time) poolReport {
	p := po.pool
	r := poolReport{
		Namespace: p.Namespace, Name: p.Name, Ready: conditionOf(p.Status.Conditions, vpoolv1alpha1.ConditionReady),
		HAEnabled: p.Spec.HA.Enabled, Master: p.Status.Master, RequestedMaster: p.Spec.Master, Epoch: p.Status.Epoch,
		FencingAllowed: conditionOf(p.Status.Conditions, vpoolv1alpha1.PoolFencingAllowed),
		Overcommitted:  conditionOf(p.Status.Conditions, vpoolv1alpha1.PoolOvercommitted),
		Hosts:          []hostReport{}, VMs: []vmReport{}, Locks: []lockReport{},
	}
	if p.Status.RestoredSettings != nil && p.Status.RestoredSettings.HA != nil && !r.HAEnabled {
		r.HAEnabled = p.Status.RestoredSettings.HA.Enabled
	}
	if t := p.Status.EffectiveHeartbeatTimeout; t != nil {
		r.HeartbeatTimeout = t.Duration.String()
	}
	if b := p.Spec.Backup; b != nil {
		r.BackupSchedule = b.Schedule
	}
	if b := p.Status.Backup; b != nil {
		r.NextBackup = b.NextScheduleTime
	}
	for i := range po.hosts {
		r.Hosts = append(r.Hosts, newHostReport(po, &po.hosts[i], now))
	}
	for _, vm := range po.vms {
		r.VMs = append(r.VMs, vmReport{Name: vm.Name, Desired: string(vm.Spec.PowerState), PowerState: string(vm.Status.PowerState),
			Host: vm.Status.ResidentOn, Ready: conditionOf(vm.Status.Conditions, vpoolv1alpha1.ConditionReady)})
	}
	for _, d := range po.vdis {
		if l := d.Status.Lock; l != nil {
			lr := lockReport{VirtualDisk: d.Name, Host: l.Host, VirtualMachine: l.VirtualMachine, Since: l.Since}
			if h := po.host(l.Host); h != nil {
				lr.HostPhase = string(h.Status.Phase)
			}
			r.Locks = append(r.Locks, lr)
		}
	}
	r.LastBackup, r.LastVerification = lastBackup(po.backups)
	return r
}

func newHostReport(po *poolObjects, h *vpoolv1alpha1.Host, now time.Time) hostReport {
	hr := hostReport{Name: h.Name, Role: string(h.Status.Role), Phase: string(h.Status.Phase), VMs: []string{},
		Locks: len(po.locksOf(h.Name)), Ready: conditionOf(h.Status.Conditions, vpoolv1alpha1.ConditionReady)}
	if hr.Phase == "" {
		hr.Phase = string(vpoolv1alpha1.HostPhasePending)
	}
	if h.Spec.State == vpoolv1alpha1.HostForgotten || !h.DeletionTimestamp.IsZero() {
		hr.State = string(vpoolv1alpha1.HostForgotten)
	}
	if l := po.leases[h.Name]; l != nil && l.Spec.RenewTime != nil {
		hr.LastRenewTime = &metav1.Time{Time: l.Spec.RenewTime.Time}
		a := now.Sub(l.Spec.RenewTime.Time).Seconds()
		hr.HeartbeatAgeSeconds = &a
	}
	hr.Fencing, hr.Watchdog = h.Status.Fencing, h.Status.Watchdog
	for _, vm := range po.vmsOn(h.Name) {
		hr.VMs = append(hr.VMs, vm.Name)
	}
	return hr
}

// lastBackup is the most recently completed backup, else the most recent
// one, and the latest verification recorded on any backup of the pool.
func lastBackup(backups []vpoolv1alpha1.PoolBackup) (*backupSummary, *verificationSummary) {
	var last *vpoolv1alpha1.PoolBackup
	var ver *verificationSummary
	for i := range backups {
		b := &backups[i]
		if t, ok := metrics.VerifiedAt(b); ok && (ver == nil || t.After(ver.At.Time)) {
			ver = &verificationSummary{Backup: b.Name, At: metav1.NewTime(t)}
		}
		if last == nil || newerBackup(b, last) {
			last = b
		}
	}
	if last == nil {
		return nil, ver
	}
	s := &backupSummary{Name: last.Name, Phase: string(last.Status.Phase), CompletedAt: last.Status.CompletedAt,
		SHA256: last.Status.SHA256, SizeBytes: last.Status.SizeBytes, Location: last.Status.Location}
	if s.Phase == "" {
		s.Phase = string(vpoolv1alpha1.BackupPending)
	}
	if c := last.Status.Counts; c != nil {
		s.Hosts, s.VMs = c.Hosts, c.VMs
	}
	return s, ver
}

// newerBackup orders completed backups before the others, then by time.
func newerBackup(a, b *vpoolv1alpha1.PoolBackup) bool {
	ac, bc := a.Status.Phase == vpoolv1alpha1.BackupCompleted, b.Status.Phase == vpoolv1alpha1.BackupCompleted
	if ac != bc {
		return ac
	}
	at, bt := a.CreationTimestamp.Time, b.CreationTimestamp.Time
	if ac {
		at, bt = a.Status.CompletedAt.Time, b.Status.CompletedAt.Time
	}
	return at.After(bt)
}

func (r *poolReport) print(out io.Writer, now time.Time) error {
	fmt.Fprintf(out, "Pool %s/%s: Ready %s%s\n", r.Namespace, r.Name, r.Ready.Status, because(r.Ready))
	master := r.Master
	if master == "" {
		master = "none"
	}
	line := fmt.Sprintf("Master %s, epoch %d", master, r.Epoch)
	if r.RequestedMaster != "" && r.RequestedMaster != r.Master {
		line += fmt.Sprintf(" (spec.master asks for %s)", r.RequestedMaster)
	}
	ha := "off"
	if r.HAEnabled {
		ha = "on"
	}
	line += "; HA " + ha
	if r.HeartbeatTimeout != "" {
		line += "; heartbeat timeout " + r.HeartbeatTimeout
	}
	fmt.Fprintln(out, line)
	switch r.FencingAllowed.Status {
	case metav1.ConditionFalse:
		fmt.Fprintf(out, "Storm guard: HOLDING, fencing nobody%s\n", because(r.FencingAllowed))
	case metav1.ConditionTrue:
		fmt.Fprintln(out, "Storm guard: fencing allowed")
	default:
		fmt.Fprintf(out, "Storm guard: unknown%s\n", because(r.FencingAllowed))
	}
	if r.Overcommitted.Status == metav1.ConditionTrue {
		fmt.Fprintf(out, "Capacity: OVERCOMMITTED%s\n", because(r.Overcommitted))
	}
	fmt.Fprintln(out)
	if err := r.printTables(out, now); err != nil {
		return err
	}
	fmt.Fprintln(out)
	r.printBackups(out, now)
	return nil
}

// printTables writes the hosts, VMs and VDI locks.
func (r *poolReport) printTables(out io.Writer, now time.Time) error {
	t := newTable(out, "HOST", "ROLE", "PHASE", "HEARTBEAT", "FENCING", "VMS", "LOCKS", "READY")
	for _, h := range r.Hosts {
		hb := ""
		if h.HeartbeatAgeSeconds != nil {
			hb = age(time.Duration(*h.HeartbeatAgeSeconds*float64(time.Second))) + " ago"
		}
		phase := h.Phase
		if h.State != "" && h.Phase != h.State {
			phase += " (forgetting)"
		}
		t.row(h.Name, h.Role, phase, hb, fencingProgress(h, now), fmt.Sprint(len(h.VMs)), fmt.Sprint(h.Locks), readyCell(h.Ready))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(r.VMs) > 0 {
		fmt.Fprintln(out)
		t = newTable(out, "VM", "WANT", "POWER", "HOST", "READY")
		for _, v := range r.VMs {
			t.row(v.Name, v.Desired, v.PowerState, v.Host, readyCell(v.Ready))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(r.Locks) > 0 {
		fmt.Fprintln(out)
		t = newTable(out, "VDI LOCK", "HOST", "HOST PHASE", "VM", "SINCE")
		for _, l := range r.Locks {
			since := ""
			if l.Since != nil {
				since = age(now.Sub(l.Since.Time)) + " ago"
			}
			t.row(l.VirtualDisk, l.Host, l.HostPhase, l.VirtualMachine, since)
		}
		return t.flush()
	}
	return nil
}

func (r *poolReport) printBackups(out io.Writer, now time.Time) {
	switch b := r.LastBackup; {
	case b == nil:
		fmt.Fprintln(out, "Last backup: none")
	case b.CompletedAt != nil && b.Phase == string(vpoolv1alpha1.BackupCompleted):
		fmt.Fprintf(out, "Last backup: %s Completed %s ago (%d hosts, %d VMs, %d bytes, sha256 %s)\n", b.Name,
			age(now.Sub(b.CompletedAt.Time)), b.Hosts, b.VMs, b.SizeBytes, short(b.SHA256))
	default:
		fmt.Fprintf(out, "Last backup: %s %s (none Completed)\n", b.Name, b.Phase)
	}
	if v := r.LastVerification; v != nil {
		fmt.Fprintf(out, "Last verification: %s passed %s ago (kubectl poolkeeper backup-verify)\n", v.Backup, age(now.Sub(v.At.Time)))
	} else {
		fmt.Fprintln(out, "Last verification: none (kubectl poolkeeper backup-verify BACKUP --key-file FILE)")
	}
	if r.BackupSchedule != "" {
		next := ""
		if r.NextBackup != nil {
			next = ", next in " + age(r.NextBackup.Sub(now))
		}
		fmt.Fprintf(out, "Backup schedule: %q%s\n", r.BackupSchedule, next)
	}
}

// fencingProgress is the FENCING cell: method, since when, the safe time
// and, for an Agent fence, the watchdog armed for the boot being fenced.
func fencingProgress(h hostReport, now time.Time) string {
	f := h.Fencing
	if f == nil {
		return ""
	}
	switch vpoolv1alpha1.HostPhase(h.Phase) {
	case vpoolv1alpha1.HostPhaseFencing:
		s := string(f.Method)
		if f.StartedAt != nil {
			s += ", started " + age(now.Sub(f.StartedAt.Time)) + " ago"
		}
		if f.SafeAt != nil {
			if d := f.SafeAt.Sub(now); d > 0 {
				s += ", safe in " + age(d)
			} else {
				s += ", safe time passed"
			}
		}
		if w := h.Watchdog; f.Method == vpoolv1alpha1.FencingAgent && w != nil && w.BootID == f.BootID &&
			w.Kind != vpoolv1alpha1.WatchdogNone {
			s += ", watchdog " + w.Device // what the safe time rests on (status.fencing.evidence)
		}
		if f.Attempts > 0 {
			s += fmt.Sprintf(", %d attempts", f.Attempts)
		}
		if f.LastError != "" {
			s += ", last error: " + f.LastError
		}
		return s
	case vpoolv1alpha1.HostPhaseFenced, vpoolv1alpha1.HostPhaseForgotten:
		if f.CompletedAt != nil {
			return string(f.Method) + ", fenced " + age(now.Sub(f.CompletedAt.Time)) + " ago"
		}
	}
	return ""
}

func readyCell(c condition) string {
	if c.Status == metav1.ConditionTrue || c.Reason == "" {
		return string(c.Status)
	}
	return fmt.Sprintf("%s (%s)", c.Status, c.Reason)
}

// because is ": reason: message" of a condition, or nothing.
func because(c condition) string {
	var parts []string
	if c.Reason != "" {
		parts = append(parts, c.Reason)
	}
	if c.Message != "" {
		parts = append(parts, c.Message)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ": ") + ")"
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12] + "…"
	}
	return sum
}
