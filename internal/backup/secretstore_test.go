package backup_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

// randomBytes is n bytes of a fixed pseudo-random sequence.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(r.Uint32())
	}
	return out
}

// newPoolBackup creates a namespace with PoolBackup b1 in it.
func newPoolBackup(t *testing.T, c client.Client) *vpoolv1alpha1.PoolBackup {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "backup-"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	b := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "b1"}}
	b.Spec.PoolRef.Name = "p"
	b.Spec.Encryption.KeySecretRef.Name = "backup-key"
	if err := c.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// chunks lists the Secrets labelled as chunks of b, by name.
func chunks(g Gomega, c client.Client, b *vpoolv1alpha1.PoolBackup) []corev1.Secret {
	var list corev1.SecretList
	g.Expect(c.List(context.Background(), &list, client.InNamespace(b.Namespace),
		client.MatchingLabels{backup.LabelBackup: "b1"})).To(Succeed())
	return list.Items
}

func chunkNames(secrets []corev1.Secret) []string {
	return names(secrets, func(s corev1.Secret) string { return s.Name })
}

// editChunk changes chunk i of b in the API server.
func editChunk(g Gomega, c client.Client, b *vpoolv1alpha1.PoolBackup, i int, edit func(*corev1.Secret)) {
	s := &corev1.Secret{}
	g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: b.Namespace, Name: backup.ChunkName(b.Name, i)}, s)).To(Succeed())
	edit(s)
	g.Expect(c.Update(context.Background(), s)).To(Succeed())
}

func TestSecretStorePutGet(t *testing.T) {
	g := NewWithT(t)
	c := cluster(t)
	ctx := context.Background()
	b := newPoolBackup(t, c)
	store := &backup.SecretStore{Client: c, ChunkSize: 1000}
	data := randomBytes(3500, 1)

	loc, err := store.Put(ctx, b, data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(loc).To(Equal("secret://" + b.Namespace + "/b1-chunk-* (4 chunks)"))

	secrets := chunks(g, c, b)
	g.Expect(chunkNames(secrets)).To(Equal([]string{"b1-chunk-000", "b1-chunk-001", "b1-chunk-002", "b1-chunk-003"}))
	for i, s := range secrets {
		g.Expect(s.Type).To(Equal(corev1.SecretTypeOpaque))
		g.Expect(s.Data).To(HaveLen(1))
		g.Expect(s.Data[backup.ChunkKey]).To(Equal(data[i*1000 : min((i+1)*1000, len(data))]))
		g.Expect(s.Annotations).To(Equal(map[string]string{
			backup.AnnotationChunkIndex: []string{"0", "1", "2", "3"}[i],
			backup.AnnotationChunkCount: "4",
			backup.AnnotationSHA256:     backup.Checksum(data),
			backup.AnnotationSize:       "3500",
		}))
		// Deleting the PoolBackup deletes its chunks (the garbage collector,
		// which envtest does not run, follows this reference).
		g.Expect(s.OwnerReferences).To(Equal([]metav1.OwnerReference{{
			APIVersion: "vpool.poolkeeper.io/v1alpha1", Kind: "PoolBackup", Name: "b1", UID: b.UID,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
		}}))
	}

	got, err := store.Get(ctx, b)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(data))

	b.Status.SHA256 = backup.Checksum(data)
	got, err = store.Get(ctx, b)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(data))

	b.Status.SHA256 = backup.Checksum([]byte("another dump"))
	_, err = store.Get(ctx, b)
	g.Expect(err).To(MatchError(backup.ErrChecksum))
	g.Expect(err).To(MatchError(ContainSubstring("hold a dump with sha256 " + backup.Checksum(data) + ", its status records " + b.Status.SHA256)))

	t.Run("uncached reader", func(t *testing.T) {
		g := NewWithT(t)
		b.Status.SHA256 = ""
		reader := &backup.SecretStore{Client: nil, Reader: c}
		got, err := reader.Get(ctx, b)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got).To(Equal(data))
	})
}

func TestSecretStoreDetectsDamage(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	data := randomBytes(3500, 2)
	tests := map[string]struct {
		damage func(g Gomega, b *vpoolv1alpha1.PoolBackup)
		want   error
		msg    string
	}{
		"a flipped byte": {
			damage: func(g Gomega, b *vpoolv1alpha1.PoolBackup) {
				editChunk(g, c, b, 2, func(s *corev1.Secret) { s.Data[backup.ChunkKey][17] ^= 0x40 })
			},
			want: backup.ErrChecksum, msg: "stored sha256 " + backup.Checksum(data) + ", computed ",
		},
		"a truncated chunk": {
			damage: func(g Gomega, b *vpoolv1alpha1.PoolBackup) {
				editChunk(g, c, b, 3, func(s *corev1.Secret) { s.Data[backup.ChunkKey] = s.Data[backup.ChunkKey][:10] })
			},
			want: backup.ErrChecksum, msg: "stored sha256 " + backup.Checksum(data) + ", computed ",
		},
		"a missing chunk": {
			damage: func(g Gomega, b *vpoolv1alpha1.PoolBackup) {
				g.Expect(c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: "b1-chunk-001"}})).To(Succeed())
			},
			want: backup.ErrMissingChunk, msg: "chunk 1 of 4 of PoolBackup " + "%s/b1 (Secret b1-chunk-001) is missing",
		},
		"no chunk at all": {
			damage: func(g Gomega, b *vpoolv1alpha1.PoolBackup) {
				g.Expect(c.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(b.Namespace), client.MatchingLabels{backup.LabelBackup: "b1"})).To(Succeed())
			},
			want: backup.ErrMissingChunk, msg: "PoolBackup %s/b1 has no stored data: Secret b1-chunk-000 not found",
		},
		"a chunk of another write": {
			damage: func(g Gomega, b *vpoolv1alpha1.PoolBackup) {
				editChunk(g, c, b, 3, func(s *corev1.Secret) { s.Annotations[backup.AnnotationSHA256] = backup.Checksum(nil) })
			},
			want: backup.ErrChecksum, msg: "is not part of the write of chunk 0",
		},
		"a chunk without its annotations": {
			damage: func(g Gomega, b *vpoolv1alpha1.PoolBackup) {
				editChunk(g, c, b, 0, func(s *corev1.Secret) { delete(s.Annotations, backup.AnnotationChunkCount) })
			},
			want: backup.ErrCorrupt, msg: "has missing or invalid annotations",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			b := newPoolBackup(t, c)
			store := &backup.SecretStore{Client: c, ChunkSize: 1000}
			_, err := store.Put(ctx, b, data)
			g.Expect(err).NotTo(HaveOccurred())
			tc.damage(g, b)
			got, err := store.Get(ctx, b)
			g.Expect(got).To(BeNil())
			g.Expect(err).To(MatchError(tc.want))
			msg := strings.Replace(tc.msg, "%s", b.Namespace, 1)
			g.Expect(err).To(MatchError(ContainSubstring(msg)))

			// Put repairs what it finds.
			_, err = store.Put(ctx, b, data)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(store.Get(ctx, b)).To(Equal(data))
		})
	}
}

func TestSecretStorePutIsIdempotent(t *testing.T) {
	g := NewWithT(t)
	c := cluster(t)
	ctx := context.Background()
	b := newPoolBackup(t, c)
	store := &backup.SecretStore{Client: c, ChunkSize: 1000}
	first := randomBytes(3500, 3)

	_, err := store.Put(ctx, b, first)
	g.Expect(err).NotTo(HaveOccurred())
	versions := map[string]string{}
	for _, s := range chunks(g, c, b) {
		versions[s.Name] = s.ResourceVersion
	}

	// The same data again (a retry): nothing is written.
	_, err = store.Put(ctx, b, first)
	g.Expect(err).NotTo(HaveOccurred())
	for _, s := range chunks(g, c, b) {
		g.Expect(s.ResourceVersion).To(Equal(versions[s.Name]), s.Name)
	}

	// A smaller dump: the extra chunks go.
	second := randomBytes(1500, 4)
	loc, err := store.Put(ctx, b, second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(loc).To(HaveSuffix("(2 chunks)"))
	g.Expect(chunkNames(chunks(g, c, b))).To(Equal([]string{"b1-chunk-000", "b1-chunk-001"}))
	g.Expect(store.Get(ctx, b)).To(Equal(second))

	// A crash in the middle of a bigger write left chunk 0 of the old write
	// and chunks 1..2 of a newer one: Get refuses, the next Put repairs.
	third := randomBytes(2200, 5)
	partial := &backup.SecretStore{Client: c, ChunkSize: 1000}
	_, err = partial.Put(ctx, b, third)
	g.Expect(err).NotTo(HaveOccurred())
	editChunk(g, c, b, 0, func(s *corev1.Secret) {
		s.Data[backup.ChunkKey] = second[:1000]
		s.Annotations[backup.AnnotationSHA256] = backup.Checksum(second)
		s.Annotations[backup.AnnotationChunkCount] = "2"
		s.Annotations[backup.AnnotationSize] = "1500"
	})
	_, err = store.Get(ctx, b)
	g.Expect(err).To(MatchError(backup.ErrChecksum))
	_, err = store.Put(ctx, b, third)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(chunkNames(chunks(g, c, b))).To(HaveLen(3))
	g.Expect(store.Get(ctx, b)).To(Equal(third))

	// One chunk with the default size.
	loc, err = (&backup.SecretStore{Client: c}).Put(ctx, b, third)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(loc).To(HaveSuffix("(1 chunk)"))
	g.Expect(chunkNames(chunks(g, c, b))).To(Equal([]string{"b1-chunk-000"}))
}

func TestSecretStoreNeverTouchesOtherSecrets(t *testing.T) {
	g := NewWithT(t)
	c := cluster(t)
	ctx := context.Background()
	b := newPoolBackup(t, c)
	store := &backup.SecretStore{Client: c, ChunkSize: 1000}

	// A user's Secret that happens to have a chunk's name.
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: "b1-chunk-001"},
		Data: map[string][]byte{"password": []byte("keep me")}}
	g.Expect(c.Create(ctx, foreign)).To(Succeed())
	_, err := store.Put(ctx, b, randomBytes(3500, 6))
	g.Expect(err).To(MatchError(ContainSubstring("secret " + b.Namespace + "/b1-chunk-001 exists and is not a chunk of PoolBackup b1; refusing to overwrite it")))
	g.Expect(c.Get(ctx, client.ObjectKeyFromObject(foreign), foreign)).To(Succeed())
	g.Expect(foreign.Data).To(Equal(map[string][]byte{"password": []byte("keep me")}))

	// Labelled like a chunk, but not owned by a PoolBackup b1: Delete leaves it.
	foreign.Labels = map[string]string{backup.LabelBackup: "b1"}
	foreign.Annotations = map[string]string{backup.AnnotationChunkIndex: "1"}
	g.Expect(c.Update(ctx, foreign)).To(Succeed())
	g.Expect(store.Delete(ctx, b)).To(Succeed())
	g.Expect(chunkNames(chunks(g, c, b))).To(Equal([]string{"b1-chunk-001"}))
}

func TestSecretStoreTakesOverChunksOfAnEarlierBackup(t *testing.T) {
	g := NewWithT(t)
	c := cluster(t)
	ctx := context.Background()
	b := newPoolBackup(t, c)
	// A chunk left by a deleted PoolBackup b1 that the garbage collector has
	// not removed yet.
	stale := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: "b1-chunk-000",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "vpool.poolkeeper.io/v1alpha1", Kind: "PoolBackup", Name: "b1",
			UID: "uid-of-a-deleted-backup", Controller: ptr.To(true)}}},
		Data: map[string][]byte{backup.ChunkKey: []byte("old")}}
	g.Expect(c.Create(ctx, stale)).To(Succeed())

	store := &backup.SecretStore{Client: c}
	data := randomBytes(100, 7)
	_, err := store.Put(ctx, b, data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Get(ctx, client.ObjectKeyFromObject(stale), stale)).To(Succeed())
	g.Expect(metav1.IsControlledBy(stale, b)).To(BeTrue())
	g.Expect(stale.OwnerReferences).To(HaveLen(1))
	g.Expect(store.Get(ctx, b)).To(Equal(data))
}

func TestSecretStoreDelete(t *testing.T) {
	g := NewWithT(t)
	c := cluster(t)
	ctx := context.Background()
	b := newPoolBackup(t, c)
	store := &backup.SecretStore{Client: c, ChunkSize: 1000}
	_, err := store.Put(ctx, b, randomBytes(2500, 8))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(chunks(g, c, b)).To(HaveLen(3))

	g.Expect(store.Delete(ctx, b)).To(Succeed())
	g.Expect(chunks(g, c, b)).To(BeEmpty())
	g.Expect(store.Delete(ctx, b)).To(Succeed(), "deleting nothing is fine")
	_, err = store.Get(ctx, b)
	g.Expect(err).To(MatchError(backup.ErrMissingChunk))
}

func TestSecretStoreLongNames(t *testing.T) {
	g := NewWithT(t)
	c := cluster(t)
	ctx := context.Background()
	b := newPoolBackup(t, c)
	long := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: "pool-" + strings.Repeat("x", 70) + ".2026-03-01"}}
	long.Spec = b.Spec
	g.Expect(c.Create(ctx, long)).To(Succeed())
	label := backup.LabelValue(long.Name)
	g.Expect(label).To(HavePrefix("sha256-"))
	g.Expect(len(label)).To(BeNumerically("<=", 63))
	g.Expect(backup.LabelValue("b1")).To(Equal("b1"))

	store := &backup.SecretStore{Client: c, ChunkSize: 1000}
	data := randomBytes(2100, 9)
	_, err := store.Put(ctx, long, data)
	g.Expect(err).NotTo(HaveOccurred())
	var list corev1.SecretList
	g.Expect(c.List(ctx, &list, client.InNamespace(b.Namespace), client.MatchingLabels{backup.LabelBackup: label})).To(Succeed())
	g.Expect(list.Items).To(HaveLen(3))
	g.Expect(store.Get(ctx, long)).To(Equal(data))
	g.Expect(store.Delete(ctx, long)).To(Succeed())
	g.Expect(c.List(ctx, &list, client.InNamespace(b.Namespace), client.MatchingLabels{backup.LabelBackup: label})).To(Succeed())
	g.Expect(list.Items).To(BeEmpty())
}

func TestSecretStoreRefusesBadInput(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	b := newPoolBackup(t, c)
	long := b.DeepCopy()
	long.Name = strings.Repeat("b", 250)
	noUID := b.DeepCopy()
	noUID.UID = ""
	tests := map[string]struct {
		store  *backup.SecretStore
		backup *vpoolv1alpha1.PoolBackup
		data   []byte
		msg    string
	}{
		"no data":             {store: &backup.SecretStore{Client: c}, backup: b, msg: "no data"},
		"chunks too big":      {store: &backup.SecretStore{Client: c, ChunkSize: 2 << 20}, backup: b, data: []byte("x"), msg: "chunk size 2097152 is not between 1 and"},
		"too many chunks":     {store: &backup.SecretStore{Client: c, ChunkSize: 1}, backup: b, data: make([]byte, 1001), msg: "at most 1000 are allowed"},
		"a name too long":     {store: &backup.SecretStore{Client: c}, backup: long, data: []byte("x"), msg: "too long for chunk Secret names"},
		"no UID":              {store: &backup.SecretStore{Client: c}, backup: noUID, data: []byte("x"), msg: "no UID"},
		"no PoolBackup":       {store: &backup.SecretStore{Client: c}, data: []byte("x"), msg: "needs a name and a namespace"},
		"negative chunk size": {store: &backup.SecretStore{Client: c, ChunkSize: -1}, backup: b, data: []byte("x"), msg: "chunk size -1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := tc.store.Put(ctx, tc.backup, tc.data)
			g.Expect(err).To(MatchError(ContainSubstring(tc.msg)))
		})
	}
}

// The whole path: dump, seal, store, read back, check, open, plan.
func TestBackupAndRestoreThroughSecrets(t *testing.T) {
	g := NewWithT(t)
	c := cluster(t)
	ctx := context.Background()
	b := newPoolBackup(t, c)
	d := newWorld().dump()
	data, err := backup.Seal(d, key)
	g.Expect(err).NotTo(HaveOccurred())
	store := &backup.SecretStore{Client: c, ChunkSize: 700}
	_, err = store.Put(ctx, b, data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(len(chunks(g, c, b))).To(BeNumerically(">", 1))
	counts := d.Counts()
	b.Status = vpoolv1alpha1.PoolBackupStatus{Phase: vpoolv1alpha1.BackupCompleted, SHA256: backup.Checksum(data), Counts: &counts}

	stored, err := store.Get(ctx, b)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.Equal(stored, data)).To(BeTrue())
	pool := target(strict, false)
	pool.Namespace = b.Namespace
	plan, err := backup.Preflight(b, stored, key, pool, backup.Existing{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(plan.Blocked()).To(BeFalse())

	// The plan's objects are valid for the API server, in order.
	for _, obj := range plan.Objects() {
		g.Expect(c.Create(ctx, obj)).To(Succeed(), "%s %s", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName())
	}
	for _, v := range plan.VirtualMachines {
		if st, ok := plan.VMStatuses[v.Name]; ok {
			g.Expect(st.Pending(&v.Status)).To(BeTrue(), v.Name)
			st.Apply(&v.Status, d.TakenAt)
			g.Expect(c.Status().Update(ctx, v)).To(Succeed())
			g.Expect(st.Pending(&v.Status)).To(BeFalse(), "written once")
		}
	}
	vm4 := &vpoolv1alpha1.VirtualMachine{}
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: "vm4"}, vm4)).To(Succeed())
	g.Expect(vm4.Status.PowerState).To(Equal(vpoolv1alpha1.PowerHalted))
	g.Expect(vm4.Status.Conditions).To(ConsistOf(And(HaveField("Type", backup.ConditionRestored),
		HaveField("Reason", backup.ReasonSuspendImageLost))))
	g.Expect(vm4.Spec.PoolRef.Name).To(Equal("restored"))

	// Resuming the restore: everything is recognised, nothing conflicts.
	var hosts vpoolv1alpha1.HostList
	var srs vpoolv1alpha1.StorageRepositoryList
	var vdis vpoolv1alpha1.VirtualDiskList
	var vms vpoolv1alpha1.VirtualMachineList
	for _, l := range []client.ObjectList{&hosts, &srs, &vdis, &vms} {
		g.Expect(c.List(ctx, l, client.InNamespace(b.Namespace))).To(Succeed())
	}
	existing := backup.ExistingFrom(hosts.Items, srs.Items, vdis.Items, vms.Items)
	secret := &corev1.Secret{}
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: "bmc-h3"}, secret)).To(Succeed())
	existing.Add(secret)
	again, err := backup.Preflight(b, stored, key, pool, existing)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again.Objects()).To(BeEmpty())
	g.Expect(again.Conflicts).To(BeEmpty())
	g.Expect(again.AlreadyRestored).To(HaveLen(15))
}

// noSecretList is a client that, like the manager's RBAC, may get Secrets but
// not list them.
type noSecretList struct{ client.Client }

func (c noSecretList) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*corev1.SecretList); ok {
		return apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "", errors.New("list is not granted"))
	}
	return c.Client.List(ctx, list, opts...)
}

func TestSecretStoreNeverListsSecrets(t *testing.T) {
	g := NewWithT(t)
	c := cluster(t)
	ctx := context.Background()
	b := newPoolBackup(t, c)
	store := &backup.SecretStore{Client: noSecretList{c}, ChunkSize: 1000}

	_, err := store.Put(ctx, b, randomBytes(3500, 9))
	g.Expect(err).NotTo(HaveOccurred())
	smaller := randomBytes(1500, 10)
	_, err = store.Put(ctx, b, smaller)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(chunkNames(chunks(g, c, b))).To(Equal([]string{"b1-chunk-000", "b1-chunk-001"}), "the extra chunks went")
	g.Expect(store.Get(ctx, b)).To(Equal(smaller))

	g.Expect(store.Delete(ctx, b)).To(Succeed())
	g.Expect(chunks(g, c, b)).To(BeEmpty())
}

// A delete cut short leaves the lower chunks: they are deleted from the top
// down, so the next Delete still finds them by name.
func TestSecretStoreDeleteResumes(t *testing.T) {
	g := NewWithT(t)
	c := cluster(t)
	ctx := context.Background()
	b := newPoolBackup(t, c)
	store := &backup.SecretStore{Client: noSecretList{c}, ChunkSize: 1000}
	_, err := store.Put(ctx, b, randomBytes(3500, 11))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: "b1-chunk-003"}})).To(Succeed())
	g.Expect(c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: "b1-chunk-002"}})).To(Succeed())

	g.Expect(store.Delete(ctx, b)).To(Succeed())
	g.Expect(chunks(g, c, b)).To(BeEmpty())
}
