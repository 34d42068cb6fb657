package controllers_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

// memoryStore keeps dumps in memory, by namespace and name, and counts the reads.
type memoryStore struct {
	mu    sync.Mutex
	dumps map[string][]byte
	gets  int
}

var _ backup.Store = (*memoryStore)(nil)

func (s *memoryStore) key(b *vpoolv1alpha1.PoolBackup) string { return b.Namespace + "/" + b.Name }

func (s *memoryStore) Put(_ context.Context, b *vpoolv1alpha1.PoolBackup, data []byte) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dumps[s.key(b)] = append([]byte(nil), data...)
	return "memory://" + s.key(b), nil
}

func (s *memoryStore) Get(_ context.Context, b *vpoolv1alpha1.PoolBackup) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	data, ok := s.dumps[s.key(b)]
	if !ok {
		return nil, fmt.Errorf("%w: no dump of %s in memory", backup.ErrMissingChunk, s.key(b))
	}
	return data, nil
}

func (s *memoryStore) Delete(_ context.Context, b *vpoolv1alpha1.PoolBackup) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.dumps, s.key(b))
	return nil
}

func (s *memoryStore) reads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

// TestRestoreReadsThroughTheInjectedStore: a manager given a Store keeps its
// backups there and restores from there too, not from the store that the
// backup's spec.storage names.
func TestRestoreReadsThroughTheInjectedStore(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	populatedPool(t, ns)
	createKey(t, ns, "k", backupKey)
	store := &memoryStore{dumps: map[string][]byte{}}
	startManager(t, ns, controllers.Options{Store: store})
	pb := completedBackup(t, g, ns)
	g.Expect(pb.Status.Location).To(Equal("memory://" + ns + "/b"))
	err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: backup.ChunkName("b", 0)}, &corev1.Secret{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no chunk Secret: %v", err)
	readsByBackup := store.reads() // the backup reads its dump back once to verify it
	losePool(t, g, ns)

	createRestoringPool(t, ns, "p2", vpoolv1alpha1.RestoreSource{BackupName: "b"})
	g.Eventually(restored(ns, "p2"), wait, poll).Should(HaveField("Status", metav1.ConditionTrue))
	g.Expect(store.reads()).To(BeNumerically(">", readsByBackup), "the restore read the injected store")
	g.Expect(getPool(g, ns, "p2").Status.Restore.Created).To(Equal(vpoolv1alpha1.BackupCounts{Hosts: 2, SRs: 2, VDIs: 4, VMs: 4}))
}
