package controllers_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// A Recovery that names its sources or its choice wrongly is refused at
// apply, with a message that says what to write.
func TestRecoveryValidation(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	recovery := func(name string, mutate func(*vpoolv1alpha1.Recovery)) *vpoolv1alpha1.Recovery {
		r := &vpoolv1alpha1.Recovery{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		r.Spec.PoolRef.Name = "dr"
		r.Spec.Sources = []vpoolv1alpha1.RecoverySource{{BackupName: "b1"}, {Location: "primary", Pool: "prod"}}
		r.Spec.VirtualMachines = []string{"web"}
		mutate(r)
		return r
	}
	for name, tc := range map[string]struct {
		mutate func(*vpoolv1alpha1.Recovery)
		msg    string
	}{
		"both kinds of source": {func(r *vpoolv1alpha1.Recovery) { r.Spec.Sources[0].Location = "primary" },
			"a source is either backupName or location and pool"},
		"a location without its pool": {func(r *vpoolv1alpha1.Recovery) { r.Spec.Sources[1].Pool = "" },
			"location and pool go together"},
		"nothing chosen":    {func(r *vpoolv1alpha1.Recovery) { r.Spec.VirtualMachines = nil }, "choose VMs"},
		"no source":         {func(r *vpoolv1alpha1.Recovery) { r.Spec.Sources = nil }, "spec.sources"},
		"unknown conflicts": {func(r *vpoolv1alpha1.Recovery) { r.Spec.Conflicts = "Overwrite" }, "Fail"},
	} {
		err := k8s.Create(context.Background(), recovery("bad", tc.mutate))
		g.Expect(err).To(MatchError(ContainSubstring(tc.msg)), name)
	}
	good := recovery("good", func(*vpoolv1alpha1.Recovery) {})
	g.Expect(k8s.Create(context.Background(), good)).To(Succeed())
	g.Expect(good.Spec.Conflicts).To(Equal(vpoolv1alpha1.ConflictsFail))
	g.Expect(*good.Spec.PowerOn).To(BeTrue())
}
