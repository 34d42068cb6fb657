package backup_test

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

// bigDump is a pool of 1,000 hosts, 20,000 VMs and 40,000 VDIs (two per VM,
// on 10 shared SRs and the hosts' local SRs), the size the design plans for.
func bigDump() *backup.Dump {
	const nHosts, nVMs, nShared = 1000, 20000, 10
	w := newWorld()
	w.hosts, w.srs, w.vdis, w.vms = nil, nil, nil, nil
	for i := range nHosts {
		h := host(fmt.Sprintf("host-%04d", i), "p", vpoolv1alpha1.RoleMember)
		h.Labels = map[string]string{"rack": fmt.Sprintf("r%02d", i/40), "zone": "a"}
		w.hosts = append(w.hosts, h)
		w.srs = append(w.srs, sr(fmt.Sprintf("local-%04d", i), "p", false, h.Name))
	}
	for i := range nShared {
		w.srs = append(w.srs, sr(fmt.Sprintf("nfs-%02d", i), "p", true, ""))
	}
	for i := range nVMs {
		root := vdi(fmt.Sprintf("vm-%05d-root", i), "p", fmt.Sprintf("nfs-%02d", i%nShared))
		data := vdi(fmt.Sprintf("vm-%05d-data", i), "p", fmt.Sprintf("local-%04d", i%nHosts))
		data.Spec.Size = resource.MustParse("500Gi")
		w.vdis = append(w.vdis, root, data)
		v := vm(fmt.Sprintf("vm-%05d", i), "p", vpoolv1alpha1.DesiredRunning, vpoolv1alpha1.PowerRunning,
			fmt.Sprintf("host-%04d", i%nHosts), root.Name, data.Name)
		v.Labels = map[string]string{"app": fmt.Sprintf("app-%03d", i%300), "tier": "web"}
		v.Spec.StartOrder = int32(i % 10)
		w.vms = append(w.vms, v)
	}
	return w.dump()
}

func BenchmarkSeal(b *testing.B) {
	d := bigDump()
	b.ReportAllocs()
	var size int
	for b.Loop() {
		data, err := backup.Seal(d, key)
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(size), "sealed-bytes")
	b.ReportMetric(float64((size+backup.DefaultChunkSize-1)/backup.DefaultChunkSize), "secret-chunks")
}

func BenchmarkOpen(b *testing.B) {
	data, err := backup.Seal(bigDump(), key)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := backup.Open(data, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlan(b *testing.B) {
	d := bigDump()
	b.ReportAllocs()
	for b.Loop() {
		p, err := backup.Plan(d, target(strict, false), backup.Existing{}, strict)
		if err != nil {
			b.Fatal(err)
		}
		if len(p.VirtualMachines) != 20000 {
			b.Fatalf("%d VMs planned", len(p.VirtualMachines))
		}
	}
}
