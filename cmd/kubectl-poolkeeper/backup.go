package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

const backupLong = `Back a pool's database up, xe pool-dump-database: create a PoolBackup and
wait until it is Completed (or Failed). The operator reads the whole pool at
one point in time, encrypts it, stores it and reads it back before it says
Completed.

The encryption key and the storage are the pool's (spec.backup) unless
--key-secret names the Secret holding the key (entry "key", at least 32
bytes). Without spec.backup.storage the backup goes to Secrets in the pool's
namespace.

Examples:
  kubectl poolkeeper backup demo
  kubectl poolkeeper backup demo --name before-upgrade --key-secret demo-backup-key`

type backupFlags struct {
	name      string
	keySecret string
	wait      bool
	timeout   time.Duration
}

func newBackupCommand(o *options) *cobra.Command {
	var f backupFlags
	cmd := &cobra.Command{
		Use:   "backup POOL",
		Short: "Back the pool database up and wait (xe pool-dump-database)",
		Long:  backupLong,
		Args:  exactArgs(1, "POOL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.connect(o)
			if err != nil {
				return err
			}
			return runBackup(cmd.Context(), o, c, ns, args[0], f)
		},
	}
	cmd.Flags().StringVar(&f.name, "name", "", "Name of the PoolBackup (default: POOL-manual-<UTC time>).")
	cmd.Flags().StringVar(&f.keySecret, "key-secret", "", "Secret whose `key` entry encrypts the backup (default: the pool's spec.backup.encryption).")
	cmd.Flags().BoolVar(&f.wait, "wait", true, "Wait until the backup is Completed or Failed.")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Minute, "How long to wait.")
	return cmd
}

// backupReport is a PoolBackup as backup shows it; -o json|yaml prints it.
type backupReport struct {
	Namespace   string                      `json:"namespace"`
	Name        string                      `json:"name"`
	Pool        string                      `json:"pool"`
	Phase       string                      `json:"phase"`
	Ready       condition                   `json:"ready"`
	CompletedAt *metav1.Time                `json:"completedAt,omitempty"`
	PoolEpoch   *int64                      `json:"poolEpoch,omitempty"`
	Counts      *vpoolv1alpha1.BackupCounts `json:"counts,omitempty"`
	SizeBytes   int64                       `json:"sizeBytes,omitempty"`
	SHA256      string                      `json:"sha256,omitempty"`
	Location    string                      `json:"location,omitempty"`
}

func newBackupReport(b *vpoolv1alpha1.PoolBackup) *backupReport {
	r := &backupReport{Namespace: b.Namespace, Name: b.Name, Pool: b.Spec.PoolRef.Name, Phase: string(b.Status.Phase),
		Ready: conditionOf(b.Status.Conditions, vpoolv1alpha1.ConditionReady), CompletedAt: b.Status.CompletedAt,
		PoolEpoch: b.Status.PoolEpoch, Counts: b.Status.Counts, SizeBytes: b.Status.SizeBytes, SHA256: b.Status.SHA256,
		Location: b.Status.Location}
	if r.Phase == "" {
		r.Phase = string(vpoolv1alpha1.BackupPending)
	}
	return r
}

func runBackup(ctx context.Context, o *options, c client.Client, ns, poolName string, f backupFlags) error {
	pool, err := getPool(ctx, c, ns, poolName)
	if err != nil {
		return err
	}
	pb := &vpoolv1alpha1.PoolBackup{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: f.name},
		Spec:       vpoolv1alpha1.PoolBackupSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: poolName}},
	}
	if pb.Name == "" {
		pb.Name = fmt.Sprintf("%s-manual-%s", poolName, strings.ToLower(o.now().UTC().Format("20060102t150405z")))
	}
	if s := pool.Spec.Backup; s != nil {
		pb.Spec.Storage, pb.Spec.Encryption = s.Storage, s.Encryption
	}
	if f.keySecret != "" {
		pb.Spec.Encryption.KeySecretRef.Name = f.keySecret
	}
	if pb.Spec.Encryption.KeySecretRef.Name == "" {
		return usageError{fmt.Errorf("pool %s has no spec.backup.encryption: name the Secret holding the key with --key-secret", poolName)}
	}
	if err := c.Create(ctx, pb); err != nil {
		return fmt.Errorf("creating PoolBackup %s/%s: %w", ns, pb.Name, err)
	}
	if o.output == "table" {
		fmt.Fprintf(o.out, "poolbackup/%s created for pool %s\n", pb.Name, poolName)
	}
	if f.wait {
		err = poll(ctx, o, f.timeout, func() (bool, string, error) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(pb), pb); err != nil {
				return false, "", err
			}
			p := pb.Status.Phase
			return p == vpoolv1alpha1.BackupCompleted || p == vpoolv1alpha1.BackupFailed,
				fmt.Sprintf("PoolBackup %s is %s", pb.Name, orNone(string(p))), nil
		})
		if err != nil {
			return err
		}
	}
	r := newBackupReport(pb)
	var failed error
	if pb.Status.Phase == vpoolv1alpha1.BackupFailed {
		failed = fmt.Errorf("PoolBackup %s/%s Failed%s", ns, pb.Name, because(r.Ready))
	}
	if done, err := printStructured(o, r); done {
		if err != nil {
			return err
		}
		return failed
	}
	if failed != nil {
		return failed
	}
	if !f.wait {
		return nil
	}
	fmt.Fprintf(o.out, "poolbackup/%s Completed: %s\n", pb.Name, r.summary())
	return nil
}

func (r *backupReport) summary() string {
	var parts []string
	if c := r.Counts; c != nil {
		parts = append(parts, fmt.Sprintf("%d hosts, %d SRs, %d VDIs, %d VMs", c.Hosts, c.SRs, c.VDIs, c.VMs))
	}
	if r.PoolEpoch != nil {
		parts = append(parts, fmt.Sprintf("epoch %d", *r.PoolEpoch))
	}
	parts = append(parts, fmt.Sprintf("%d bytes", r.SizeBytes), "sha256 "+r.SHA256)
	if r.Location != "" {
		parts = append(parts, "at "+r.Location)
	}
	return strings.Join(parts, ", ")
}
