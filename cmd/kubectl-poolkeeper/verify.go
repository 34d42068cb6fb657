package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
)

const backupVerifyLong = `Verify a backup as a restore would read it, offline from the operator: download
the stored bytes (from the chunk Secrets of the backup's namespace, or from
its S3 bucket with the credentials Secret the PoolBackup names), check their
sha256 against the one recorded in the PoolBackup's status, and decrypt them
with the key in --key-file (the bytes of the key Secret's "key" entry, e.g.
kubectl get secret KEY -o jsonpath='{.data.key}' | base64 -d > key.bin), or,
for a backup sealed to age recipients, with the identities in
--identities-file (the "identities" entry, or the DR site's own copy). It
checks what xe pool-restore-database dry-run=true checks before
xe pool-restore-database: the dump opens with this key and holds what the
backup says.

A backup that passes is annotated vpool.poolkeeper.io/verified-at (the
"last verification" of kubectl poolkeeper status and of the metric
poolkeeper_pool_last_verification_timestamp_seconds); --record=false leaves
it untouched. Exit status 1 when any check fails, naming it.

Examples:
  kubectl poolkeeper backup-verify demo-1 --key-file key.bin
  kubectl poolkeeper backup-verify demo-1 --key-file key.bin --save demo-1.pkdump`

type verifyFlags struct {
	keyFile      string
	identityFile string
	save         string
	record       bool
}

func newBackupVerifyCommand(o *options) *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "backup-verify BACKUP --key-file FILE | --identities-file FILE",
		Short: "Download a backup, check its sha256 and decrypt it with a key file (before xe pool-restore-database)",
		Long:  backupVerifyLong,
		Args:  exactArgs(1, "BACKUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (f.keyFile == "") == (f.identityFile == "") {
				return usageError{errors.New("give one of --key-file (the backup's passphrase, the key Secret's `key` entry) " +
					"or --identities-file (its age identities, the `identities` entry)")}
			}
			c, ns, err := o.connect(o)
			if err != nil {
				return err
			}
			return runBackupVerify(cmd.Context(), o, c, ns, args[0], f)
		},
	}
	cmd.Flags().StringVar(&f.keyFile, "key-file", "", "File holding the key material (the key Secret's `key` entry, as bytes).")
	cmd.Flags().StringVar(&f.identityFile, "identities-file", "",
		"File holding age identities (AGE-SECRET-KEY-..., the key Secret's `identities` entry), for backups sealed to recipients.")
	cmd.Flags().StringVar(&f.save, "save", "", "Also write the downloaded (still encrypted) bytes to this file.")
	cmd.Flags().BoolVar(&f.record, "record", true, "Annotate a backup that passes with the time of the verification.")
	return cmd
}

// verification is what backup-verify found; -o json|yaml prints it.
type verification struct {
	Namespace  string                      `json:"namespace"`
	Backup     string                      `json:"backup"`
	Pool       string                      `json:"pool"`
	Location   string                      `json:"location,omitempty"`
	SizeBytes  int                         `json:"sizeBytes,omitempty"`
	SHA256     string                      `json:"sha256,omitempty"`
	Counts     *vpoolv1alpha1.BackupCounts `json:"counts,omitempty"`
	TakenAt    *time.Time                  `json:"takenAt,omitempty"`
	PoolEpoch  int64                       `json:"poolEpoch,omitempty"`
	Steps      []verifyStep                `json:"steps"`
	Passed     bool                        `json:"passed"`
	Failure    string                      `json:"failure,omitempty"`
	FailReason string                      `json:"reason,omitempty"`
}

type verifyStep struct {
	Step   string `json:"step"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail"`
}

func (v *verification) pass(step, detail string) {
	v.Steps = append(v.Steps, verifyStep{Step: step, Passed: true, Detail: detail})
}

// fail records the failed step and returns the error the command exits with.
func (v *verification) fail(step string, err error) error {
	v.Steps = append(v.Steps, verifyStep{Step: step, Detail: err.Error()})
	v.Failure, v.FailReason = err.Error(), backup.Reason(err)
	return fmt.Errorf("backup-verify of %s/%s FAILED at %s: %w", v.Namespace, v.Backup, step, err)
}

func runBackupVerify(ctx context.Context, o *options, c client.Client, ns, name string, f verifyFlags) error {
	v := &verification{Namespace: ns, Backup: name, Steps: []verifyStep{}}
	err := verify(ctx, o, c, v, f)
	if done, perr := printStructured(o, v); done {
		if perr != nil {
			return perr
		}
		return err
	}
	for _, s := range v.Steps {
		mark := "ok  "
		if !s.Passed {
			mark = "FAIL"
		}
		fmt.Fprintf(o.out, "%s %-9s %s\n", mark, s.Step, s.Detail)
	}
	if err == nil {
		fmt.Fprintf(o.out, "poolbackup/%s verified: it restores with this key\n", name)
	}
	return err
}

func verify(ctx context.Context, o *options, c client.Client, v *verification, f verifyFlags) error {
	keys, keyName, err := readKeys(f)
	if err != nil {
		return err
	}
	pb := &vpoolv1alpha1.PoolBackup{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: v.Namespace, Name: v.Backup}, pb); err != nil {
		return fmt.Errorf("reading PoolBackup %s/%s: %w", v.Namespace, v.Backup, err)
	}
	v.Pool, v.Location = pb.Spec.PoolRef.Name, pb.Status.Location
	if pb.Status.Phase != vpoolv1alpha1.BackupCompleted {
		return v.fail("backup", fmt.Errorf("%w: PoolBackup %s is %s", backup.ErrNotCompleted, v.Backup, orNone(string(pb.Status.Phase))))
	}
	if pb.Status.SHA256 == "" {
		return v.fail("backup", fmt.Errorf("%w: PoolBackup %s records no sha256", backup.ErrChecksum, v.Backup))
	}

	data, err := storeOf(c, pb).Get(ctx, pb)
	if err != nil {
		return v.fail("download", err)
	}
	v.SizeBytes = len(data)
	v.pass("download", fmt.Sprintf("%d bytes from %s", len(data), orNone(pb.Status.Location)))
	if f.save != "" {
		if err := os.WriteFile(f.save, data, 0o600); err != nil {
			return fmt.Errorf("writing --save: %w", err)
		}
	}

	v.SHA256 = backup.Checksum(data)
	if v.SHA256 != pb.Status.SHA256 {
		return v.fail("sha256", fmt.Errorf("%w: the stored bytes have sha256 %s, status.sha256 records %s",
			backup.ErrChecksum, v.SHA256, pb.Status.SHA256))
	}
	v.pass("sha256", v.SHA256+" as status.sha256 records")

	d, note, err := open(data, keys)
	if err != nil {
		return v.fail("decrypt", err)
	}
	counts := d.Counts()
	v.Counts, v.PoolEpoch = &counts, d.Pool.Status.Epoch
	taken := d.TakenAt
	v.TakenAt = &taken
	format := "poolkeeper's first format"
	if backup.IsAge(data) {
		format = "age format"
	}
	v.pass("decrypt", fmt.Sprintf("%s, with %s%s: pool %s taken %s at epoch %d (schema %d)", format, keyName, note,
		d.Pool.Metadata.Name, d.TakenAt.UTC().Format(time.RFC3339), d.Pool.Status.Epoch, d.SchemaVersion))

	if sc := pb.Status.Counts; sc != nil && *sc != counts {
		return v.fail("contents", fmt.Errorf("%w: the dump holds %s, status.counts records %s", backup.ErrCorrupt,
			countsString(counts), countsString(*sc)))
	}
	v.pass("contents", countsString(counts)+", as status.counts records")
	v.Passed = true

	if f.record {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, metrics.AnnotationVerifiedAt, o.now().UTC().Format(time.RFC3339))
		if err := c.Patch(ctx, pb, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			return fmt.Errorf("the backup passed, but recording it on PoolBackup %s/%s failed (--record=false skips it): %w",
				v.Namespace, v.Backup, err)
		}
	}
	return nil
}

// readKeys reads the key material of --key-file or --identities-file, as
// the operator reads the key Secret's entries.
func readKeys(f verifyFlags) (backup.Keys, string, error) {
	file, entry := f.keyFile, backup.SecretKey
	if f.identityFile != "" {
		file, entry = f.identityFile, backup.SecretIdentities
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return backup.Keys{}, "", usageError{fmt.Errorf("reading the key material: %w", err)}
	}
	keys, err := backup.ParseKeys(map[string][]byte{entry: raw}, file)
	if err != nil {
		return backup.Keys{}, "", usageError{err}
	}
	return keys, file, nil
}

// open decrypts data with keys as given; a passphrase file that ends in a
// newline the Secret's key does not have (echo KEY > file) is tried without.
func open(data []byte, keys backup.Keys) (*backup.Dump, string, error) {
	d, err := backup.OpenAny(data, keys)
	if !errors.Is(err, backup.ErrWrongKey) {
		return d, "", err
	}
	if trimmed := bytes.TrimRight(keys.Passphrase, "\r\n"); len(keys.Passphrase) > 0 && len(trimmed) < len(keys.Passphrase) {
		if d, err2 := backup.OpenAny(data, backup.PassphraseKeys(trimmed)); err2 == nil {
			return d, " (without the file's final newline)", nil
		}
	}
	return nil, "", err
}

// storeOf is where the backup's bytes are: its S3 bucket or the chunk
// Secrets of its namespace.
func storeOf(c client.Client, pb *vpoolv1alpha1.PoolBackup) backup.Store {
	if pb.Spec.Storage.Type == vpoolv1alpha1.StorageS3 {
		return &backup.S3Store{Reader: c}
	}
	return &backup.SecretStore{Client: c}
}

func countsString(c vpoolv1alpha1.BackupCounts) string {
	return fmt.Sprintf("%d hosts, %d SRs, %d VDIs, %d VMs", c.Hosts, c.SRs, c.VDIs, c.VMs)
}
