package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// errRecoveryNotYet is what recover and dr-test say until the Recovery kind
// exists: nothing is created, and the exit status is not 0.
var errRecoveryNotYet = errors.New("not available yet: this command creates a Recovery (kind vrec), " +
	"which this poolkeeper does not have; restore a whole pool with a Pool whose spec.restoreFrom names the PoolBackup " +
	"(spec.restoreFrom.dryRun: true for a DR test failover)")

func newRecoverCommand(*options) *cobra.Command {
	return &cobra.Command{
		Use:   "recover",
		Short: "Recover chosen VMs and vApps from backups (xe vm-recover, appliance-recover) — not available yet",
		Long: `Not available yet: recover will create a Recovery (xe vm-recover,
appliance-recover, vm-import metadata=true) once poolkeeper has that kind. It
exits with status 1 and changes nothing.

Today, restore a whole pool (xe pool-restore-database) by creating a Pool
with spec.restoreFrom: {backupName: BACKUP}.`,
		RunE: func(*cobra.Command, []string) error { return errRecoveryNotYet },
	}
}

func newDRTestCommand(*options) *cobra.Command {
	return &cobra.Command{
		Use:   "dr-test",
		Short: "Test a DR failover from backups, starting nothing — not available yet",
		Long: `Not available yet: dr-test will create a Recovery with spec.dryRun once
poolkeeper has that kind. It exits with status 1 and changes nothing.

Today, a DR test failover of a whole pool is a Pool with spec.restoreFrom:
{backupName: BACKUP, dryRun: true}, cleaned up when it is deleted or annotated
vpool.poolkeeper.io/dr-test-finished=true.`,
		RunE: func(*cobra.Command, []string) error { return errRecoveryNotYet },
	}
}
