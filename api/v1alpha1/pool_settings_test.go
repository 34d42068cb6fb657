package v1alpha1_test

import (
	"os"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Pool.Effective: spec wins, then the restored settings, then the defaults.
func TestPoolEffective(t *testing.T) {
	d := func(s string) *metav1.Duration { v, _ := time.ParseDuration(s); return &metav1.Duration{Duration: v} }
	restored := &vpoolv1alpha1.PoolSettings{HeartbeatTimeout: d("45s"), HA: &vpoolv1alpha1.HASpec{Enabled: true, HostFailuresToTolerate: 2},
		Master: "h2", DefaultStorageRepository: "nfs", Fencing: &vpoolv1alpha1.PoolFencingSpec{MaxConcurrent: 3, MaxUnhealthyPercent: 40},
		Backup: &vpoolv1alpha1.BackupSchedule{Schedule: "@daily"}}
	cases := map[string]struct {
		spec     vpoolv1alpha1.PoolSpec
		restored *vpoolv1alpha1.PoolSettings
		want     vpoolv1alpha1.EffectiveSettings
	}{
		"defaults without HA": {want: vpoolv1alpha1.EffectiveSettings{HeartbeatTimeout: 600 * time.Second,
			Fencing: vpoolv1alpha1.PoolFencingSpec{MaxConcurrent: 1}}},
		"defaults with HA": {spec: vpoolv1alpha1.PoolSpec{HA: vpoolv1alpha1.HASpec{Enabled: true, HostFailuresToTolerate: 1}},
			want: vpoolv1alpha1.EffectiveSettings{HeartbeatTimeout: 60 * time.Second, HA: vpoolv1alpha1.HASpec{Enabled: true, HostFailuresToTolerate: 1},
				Fencing: vpoolv1alpha1.PoolFencingSpec{MaxConcurrent: 1}}},
		"restored settings fill an empty (defaulted) spec": {spec: vpoolv1alpha1.PoolSpec{HA: vpoolv1alpha1.HASpec{HostFailuresToTolerate: 1},
			Fencing: vpoolv1alpha1.PoolFencingSpec{MaxConcurrent: 1, MaxUnhealthyPercent: 50}}, restored: restored,
			want: vpoolv1alpha1.EffectiveSettings{HeartbeatTimeout: 45 * time.Second, HA: *restored.HA, Master: "h2",
				DefaultStorageRepository: "nfs", Fencing: *restored.Fencing, Backup: restored.Backup}},
		"spec wins": {spec: vpoolv1alpha1.PoolSpec{HeartbeatTimeout: d("20s"), HA: vpoolv1alpha1.HASpec{HostFailuresToTolerate: 3},
			Master: "h1", DefaultStorageRepository: "local", Fencing: vpoolv1alpha1.PoolFencingSpec{MaxConcurrent: 2, MaxUnhealthyPercent: 50},
			Backup: &vpoolv1alpha1.BackupSchedule{Schedule: "@hourly"}}, restored: restored,
			want: vpoolv1alpha1.EffectiveSettings{HeartbeatTimeout: 20 * time.Second, HA: vpoolv1alpha1.HASpec{HostFailuresToTolerate: 3},
				Master: "h1", DefaultStorageRepository: "local", Fencing: vpoolv1alpha1.PoolFencingSpec{MaxConcurrent: 2, MaxUnhealthyPercent: 50},
				Backup: &vpoolv1alpha1.BackupSchedule{Schedule: "@hourly"}}},
		"restored HA, default timeout with HA": {restored: &vpoolv1alpha1.PoolSettings{HA: &vpoolv1alpha1.HASpec{Enabled: true}},
			want: vpoolv1alpha1.EffectiveSettings{HeartbeatTimeout: 60 * time.Second, HA: vpoolv1alpha1.HASpec{Enabled: true},
				Fencing: vpoolv1alpha1.PoolFencingSpec{MaxConcurrent: 1}}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := &vpoolv1alpha1.Pool{Spec: tc.spec, Status: vpoolv1alpha1.PoolStatus{RestoredSettings: tc.restored}}
			NewWithT(t).Expect(p.Effective()).To(Equal(tc.want))
		})
	}
}

// kubectl explain pool.spec.heartbeatTimeout gives its bounds.
func TestHeartbeatTimeoutExplainsItsBounds(t *testing.T) {
	g := NewWithT(t)
	raw, err := os.ReadFile("../../config/crd/bases/vpool.poolkeeper.io_pools.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	crd := &apiextensionsv1.CustomResourceDefinition{}
	g.Expect(yaml.Unmarshal(raw, crd)).To(Succeed())
	field := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["heartbeatTimeout"]
	g.Expect(field.Description).To(ContainSubstring("a duration between 1s and 24h"))
	g.Expect(field.XValidations).To(HaveLen(2), "the bounds are enforced at admission")
}
