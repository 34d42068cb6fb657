package backup_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

// A restore takes each pool setting the restoring Pool's spec leaves unset;
// a dump whose pool set nothing (as every dump written before the settings
// were restored) takes nothing.
func TestSettings(t *testing.T) {
	timeout := &metav1.Duration{Duration: 45 * time.Second}
	ha := vpoolv1alpha1.HASpec{Enabled: true, HostFailuresToTolerate: 1}
	fencing := vpoolv1alpha1.PoolFencingSpec{MaxConcurrent: 2, MaxUnhealthyPercent: 50}
	sched := &vpoolv1alpha1.BackupSchedule{Schedule: "@daily", Retain: 7}
	full := vpoolv1alpha1.PoolSpec{HeartbeatTimeout: timeout, HA: ha, Master: "h2", DefaultStorageRepository: "nfs",
		Fencing: fencing, Backup: sched}
	defaulted := vpoolv1alpha1.PoolSpec{HA: vpoolv1alpha1.HASpec{HostFailuresToTolerate: 1},
		Fencing: vpoolv1alpha1.PoolFencingSpec{MaxConcurrent: 1, MaxUnhealthyPercent: 50}}
	cases := map[string]struct {
		dump, target vpoolv1alpha1.PoolSpec
		dumpMaster   string
		want         *vpoolv1alpha1.PoolSettings
	}{
		"an empty target takes everything": {dump: full, target: defaulted, want: &vpoolv1alpha1.PoolSettings{
			HeartbeatTimeout: timeout, HA: &ha, Master: "h2", DefaultStorageRepository: "nfs", Fencing: &fencing, Backup: sched}},
		"the target's own settings win": {dump: full, target: vpoolv1alpha1.PoolSpec{HeartbeatTimeout: &metav1.Duration{Duration: time.Minute},
			HA: vpoolv1alpha1.HASpec{HostFailuresToTolerate: 2}, Master: "h1", Fencing: defaulted.Fencing},
			want: &vpoolv1alpha1.PoolSettings{DefaultStorageRepository: "nfs", Fencing: &fencing, Backup: sched}},
		"no requested master: the master at the dump's time": {dump: defaulted, target: defaulted, dumpMaster: "h3",
			want: &vpoolv1alpha1.PoolSettings{Master: "h3"}},
		"a dump of defaults takes nothing":    {dump: defaulted, target: defaulted},
		"an old dump (no spec) takes nothing": {target: defaulted},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := &backup.Dump{Pool: backup.PoolRecord{Spec: tc.dump, Status: backup.PoolRecordStatus{Master: tc.dumpMaster}}}
			NewWithT(t).Expect(backup.Settings(d, &tc.target)).To(Equal(tc.want))
		})
	}
}
