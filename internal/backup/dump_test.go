package backup_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

func names[T any](items []T, name func(T) string) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, name(it))
	}
	return out
}

func TestNewDump(t *testing.T) {
	g := NewWithT(t)
	w := newWorld()
	local := time.FixedZone("CET", 3600)
	d := backup.NewDump(w.pool, w.hosts, w.srs, w.vdis, w.vms, takenAt.In(local))

	g.Expect(d.SchemaVersion).To(Equal(backup.SchemaVersion))
	g.Expect(d.TakenAt).To(Equal(takenAt), "stored in UTC")
	g.Expect(d.Namespace).To(Equal("prod"))
	g.Expect(d.Pool.Metadata.Name).To(Equal("p"))
	g.Expect(d.Pool.Metadata.Labels).To(Equal(map[string]string{"site": "paris"}))
	g.Expect(d.Pool.Spec).To(Equal(w.pool.Spec))
	g.Expect(d.Pool.Status).To(Equal(backup.PoolRecordStatus{Master: "h1", Epoch: 7}))

	g.Expect(names(d.Hosts, func(r backup.HostRecord) string { return r.Metadata.Name })).To(Equal([]string{"h1", "h2", "h3"}),
		"only pool p, sorted, without the forgotten h4")
	g.Expect(d.Hosts[0].Status.Role).To(Equal(vpoolv1alpha1.RoleMaster))
	g.Expect(d.Hosts[0].Metadata.Labels).To(Equal(map[string]string{"rack": "r1"}))
	g.Expect(d.Hosts[2].Spec).To(Equal(w.hosts[0].Spec))
	g.Expect(names(d.StorageRepositories, func(r backup.StorageRepositoryRecord) string { return r.Metadata.Name })).
		To(Equal([]string{"local-h1", "shared"}))
	g.Expect(names(d.VirtualDisks, func(r backup.VirtualDiskRecord) string { return r.Metadata.Name })).
		To(Equal([]string{"data", "vm1-root", "vm2-root", "vm3-suspend", "vm4-suspend"}))
	g.Expect(d.VirtualDisks[1].Status).To(Equal(backup.VirtualDiskRecordStatus{Volume: rootVolume}),
		"vm1-root keeps its volume (and not its lock)")
	g.Expect(d.VirtualDisks[0].Status).To(BeZero(), "data records no volume")
	g.Expect(d.VirtualDisks[0].Metadata.Annotations).To(HaveKeyWithValue(vpoolv1alpha1.AnnotationVolume, dataVolume))
	g.Expect(d.VirtualDisks[2].Status).To(BeZero())
	g.Expect(names(d.VirtualMachines, func(r backup.VirtualMachineRecord) string { return r.Metadata.Name })).
		To(Equal([]string{"vm1", "vm2", "vm3", "vm4"}), "without vm5, being deleted")

	vm1 := d.VirtualMachines[0]
	g.Expect(vm1.Metadata.Annotations).To(Equal(map[string]string{"owner": "team-a"}), "last-applied-configuration dropped")
	g.Expect(vm1.Spec).To(Equal(w.vms[0].Spec))
	g.Expect(vm1.Status).To(Equal(backup.VirtualMachineRecordStatus{PowerState: vpoolv1alpha1.PowerRunning, ResidentOn: "h1"}))
	g.Expect(d.VirtualMachines[2].Status.SuspendVirtualDisk).To(Equal("vm3-suspend"))

	g.Expect(d.Omitted).To(Equal([]backup.Problem{
		{Kind: backup.KindVirtualMachine, Name: "vm5", Message: "being deleted; not backed up"},
		{Kind: backup.KindHost, Name: "h4", Message: "forgotten (host-forget); not backed up"},
	}))
	g.Expect(d.Counts()).To(Equal(vpoolv1alpha1.BackupCounts{Hosts: 3, SRs: 2, VDIs: 5, VMs: 4}))
	g.Expect(d.String()).To(ContainSubstring("prod/p"))

	// The dump is a copy: the caller's objects may change afterwards.
	w.vms[0].Spec.Disks[0].VirtualDisk = "changed"
	w.vms[0].Labels = map[string]string{"changed": "yes"}
	w.hosts[1].Spec.Capacity.CPU.Set(1)
	g.Expect(vm1.Spec.Disks[0].VirtualDisk).To(Equal("vm1-root"))
	g.Expect(d.Hosts[0].Spec.Capacity.CPU.String()).To(Equal("32"))
}

func TestAddSecrets(t *testing.T) {
	g := NewWithT(t)
	w := newWorld()
	d := backup.NewDump(w.pool, w.hosts, w.srs, w.vdis, w.vms, takenAt)
	g.Expect(d.SecretNames()).To(Equal([]string{"bmc-h3"}))

	d.AddSecrets(w.secrets...)
	d.AddSecrets(w.secrets[0]) // again: replaced, not duplicated
	g.Expect(d.Secrets).To(HaveLen(1))
	g.Expect(d.Secrets[0].Metadata.Name).To(Equal("bmc-h3"))
	g.Expect(d.Secrets[0].Type).To(Equal(corev1.SecretTypeBasicAuth))
	g.Expect(d.Secrets[0].Data).To(HaveKeyWithValue("password", []byte("calvin")))

	w.secrets[0].Data["password"][0] = 'X'
	g.Expect(d.Secrets[0].Data).To(HaveKeyWithValue("password", []byte("calvin")), "copied")
}

func TestSummarize(t *testing.T) {
	many := make([]backup.Problem, 25)
	for i := range many {
		many[i] = backup.Problem{Kind: backup.KindVirtualMachine, Name: "vm", Message: "m"}
	}
	tests := map[string]struct {
		problems []backup.Problem
		limit    int
		want     string
	}{
		"none": {want: ""},
		"one": {problems: []backup.Problem{{Kind: backup.KindHost, Name: "h1", Message: "exists"}},
			want: "Host h1: exists"},
		"under the limit": {problems: many[:2], limit: 3, want: "VirtualMachine vm: m; VirtualMachine vm: m"},
		"over the limit":  {problems: many[:5], limit: 3, want: "VirtualMachine vm: m; VirtualMachine vm: m; VirtualMachine vm: m; and 2 more"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			NewWithT(t).Expect(backup.Summarize(tc.problems, tc.limit)).To(Equal(tc.want))
		})
	}
	t.Run("default limit", func(t *testing.T) {
		g := NewWithT(t)
		s := backup.Summarize(many, 0)
		g.Expect(s).To(HaveSuffix("; and 5 more"))
		g.Expect(s).To(ContainSubstring("VirtualMachine vm: m; VirtualMachine vm: m"))
	})
}
