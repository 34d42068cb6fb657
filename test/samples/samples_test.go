// Package samples_test checks what config/samples/ gives a user who follows
// the quick start: `kubectl apply -f config/samples/` (or `make demo`, which
// applies it before any agent runs) and, once the VMs run, backup/.
package samples_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// objects reads every object of the YAML files directly in dir, as
// `kubectl apply -f dir/` does (not recursively).
func objects(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testutil.RepoRoot(), dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no YAML in %s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				break
			}
			if len(u.Object) > 0 {
				objs = append(objs, u)
			}
		}
	}
	return objs
}

func kinds(objs []*unstructured.Unstructured) map[string]int {
	n := map[string]int{}
	for _, o := range objs {
		n[o.GetKind()]++
	}
	return n
}

// TestSamplesTakeNoBackupBeforeTheVMsRun: applied before any agent runs, a
// PoolBackup would snapshot a pool without VDIs or VMs, and a restore from it
// would bring back none. The backup lives in backup/, applied by make demo
// once the VMs run.
func TestSamplesTakeNoBackupBeforeTheVMsRun(t *testing.T) {
	g := NewWithT(t)
	g.Expect(kinds(objects(t, "config/samples"))).To(And(
		HaveKeyWithValue("Pool", 1), HaveKeyWithValue("Host", 3), HaveKeyWithValue("VirtualMachine", 6),
		Not(HaveKey("PoolBackup"))))

	backup := objects(t, "config/samples/backup")
	g.Expect(kinds(backup)).To(HaveKeyWithValue("PoolBackup", 1))
	for _, o := range backup {
		if o.GetKind() == "PoolBackup" {
			pool, _, _ := unstructured.NestedString(o.Object, "spec", "poolRef", "name")
			g.Expect(pool).To(Equal("demo"))
			g.Expect(o.GetName()).To(Equal("demo-manual-1"), "the name make demo waits for and prints")
		}
	}
}

// TestPoolSampleCommentMatchesItsTimeout: the comment a user reads states the
// heartbeat timeout the sample sets.
func TestPoolSampleCommentMatchesItsTimeout(t *testing.T) {
	g := NewWithT(t)
	path := filepath.Join(testutil.RepoRoot(), "config", "samples", "vpool_v1alpha1_pool.yaml")
	data, err := os.ReadFile(path)
	g.Expect(err).NotTo(HaveOccurred())
	said := regexp.MustCompile(`stops heartbeating for (\d+s)`).FindSubmatch(data)
	g.Expect(said).NotTo(BeNil(), "the comment says after how long a silent host counts")
	var timeout string
	for _, o := range objects(t, "config/samples") {
		if o.GetKind() == "Pool" {
			timeout, _, _ = unstructured.NestedString(o.Object, "spec", "heartbeatTimeout")
		}
	}
	want, err := time.ParseDuration(timeout)
	g.Expect(err).NotTo(HaveOccurred())
	got, err := time.ParseDuration(string(said[1]))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(want))
}
