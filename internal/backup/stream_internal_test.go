package backup

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

var testKey = bytes.Repeat([]byte{7}, 32)

func smallDump() *Dump {
	pool := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	h := vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "h1", Labels: map[string]string{"a": "<b>&"}}}
	h.Spec.PoolRef.Name = "p"
	h.Spec.Capacity.CPU = resource.MustParse("4")
	vm := vpoolv1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vm1"}}
	vm.Spec.PoolRef.Name = "p"
	d := NewDump(pool, []vpoolv1alpha1.Host{h}, nil, nil, []vpoolv1alpha1.VirtualMachine{vm}, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
	d.Secrets = []SecretRecord{{Metadata: RecordMeta{Name: "s"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"k": []byte("v")}}}
	d.Omitted = []Problem{{Kind: KindHost, Name: "h9", Message: "forgotten"}}
	return d
}

// The streamed JSON is what encoding/json makes of a Dump, so that the
// schema is the Dump struct and nothing else.
func TestStreamIsEncodingJSON(t *testing.T) {
	for name, d := range map[string]*Dump{"small": smallDump(), "empty": {SchemaVersion: 1}} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			var streamed, whole bytes.Buffer
			g.Expect(writeDump(&streamed, d)).To(Succeed())
			enc := json.NewEncoder(&whole)
			enc.SetEscapeHTML(false)
			g.Expect(enc.Encode(d)).To(Succeed())
			var compact bytes.Buffer
			g.Expect(json.Compact(&compact, streamed.Bytes())).To(Succeed())
			g.Expect(compact.String() + "\n").To(Equal(whole.String()))

			got, err := readDump(bytes.NewReader(whole.Bytes()))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(BeComparableTo(d))
		})
	}
}

func sealJSON(t *testing.T, schema uint16, doc string) []byte {
	t.Helper()
	data, err := seal(testKey, schema, func(w io.Writer) error { _, err := io.WriteString(w, doc); return err })
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestOpenRefusesTheFuture(t *testing.T) {
	var current bytes.Buffer
	if err := writeDump(&current, smallDump()); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		data []byte
		want error
		msg  string
	}{
		"newer schema version": {data: sealJSON(t, 2, current.String()), want: ErrSchemaVersion,
			msg: "schema version 2, this build reads up to 1"},
		"schema version 0": {data: sealJSON(t, 0, current.String()), want: ErrSchemaVersion},
		"unknown top-level field": {data: sealJSON(t, 1, `{"schemaVersion":1,"replicas":[]}`), want: ErrSchemaVersion,
			msg: `field "replicas" this build does not know`},
		"unknown field in a record": {data: sealJSON(t, 1, `{"schemaVersion":1,"hosts":[{"metadata":{"name":"h"},"spec":{"gpu":1}}]}`),
			want: ErrSchemaVersion, msg: `unknown field "gpu"`},
		"field of another type": {data: sealJSON(t, 1, `{"schemaVersion":1,"hosts":{"h":1}}`), want: ErrSchemaVersion},
		"header and content disagree": {data: sealJSON(t, 1, `{"schemaVersion":3}`), want: ErrCorrupt,
			msg: "header says schema version 1, the content 3"},
		"not JSON":           {data: sealJSON(t, 1, `{"schemaVersion":1,`), want: ErrCorrupt},
		"trailing JSON":      {data: sealJSON(t, 1, `{"schemaVersion":1} {}`), want: ErrCorrupt},
		"not an object":      {data: sealJSON(t, 1, `[1]`), want: ErrCorrupt},
		"record not encoded": {data: sealJSON(t, 1, `{"schemaVersion":1,"pool":{"metadata":}}`), want: ErrCorrupt},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			d, err := Open(tc.data, testKey)
			g.Expect(d).To(BeNil())
			g.Expect(err).To(MatchError(tc.want))
			if tc.msg != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.msg)))
			}
		})
	}
	t.Run("older writers omit fields", func(t *testing.T) {
		g := NewWithT(t)
		d, err := Open(sealJSON(t, 1, `{"schemaVersion":1,"pool":{"metadata":{"name":"p"}}}`), testKey)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(d.Pool.Metadata.Name).To(Equal("p"))
	})
}

// A dump written before VDIs' volumes were kept decodes as it did, and
// restores its VDIs with no volume annotation (their agents find or create
// their volumes by name, as then); a VDI without a volume is written as
// then, so that an older poolkeeper still reads a dump none of whose VDIs
// has a volume; one with a volume carries it.
func TestDumpVolumes(t *testing.T) {
	g := NewWithT(t)
	old := `{"schemaVersion":1,"takenAt":"2026-01-02T03:04:05Z","namespace":"prod",` +
		`"pool":{"metadata":{"name":"p"},"spec":{},"status":{"master":"h1","epoch":3}},"hosts":null,` +
		`"storageRepositories":[{"metadata":{"name":"nfs"},"spec":{"poolRef":{"name":"p"},"type":"nfs","shared":true}}],` +
		`"virtualDisks":[{"metadata":{"name":"root","annotations":{"owner":"a"}},` +
		`"spec":{"poolRef":{"name":"p"},"storageRepository":"nfs","size":"1Gi"}}],"virtualMachines":null}`
	d, err := Open(sealJSON(t, 1, old), testKey)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.VirtualDisks).To(HaveLen(1))
	g.Expect(d.VirtualDisks[0].Status).To(BeZero())
	g.Expect(d.VirtualDisks[0].Spec.Size.String()).To(Equal("1Gi"))
	target := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: "dr", Name: "p", UID: "uid-p"}}
	target.Spec.RestoreFrom = &vpoolv1alpha1.RestoreSource{BackupName: "b"}
	p, err := Plan(d, target, Existing{}, vpoolv1alpha1.RestoreStrict)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.VirtualDisks).To(HaveLen(1))
	g.Expect(p.VirtualDisks[0].Annotations).To(Equal(map[string]string{"owner": "a", AnnotationRestoredFrom: "b"}),
		"no volume annotation: the VDI gets its volume by name, as before")

	vdi := func(name, volume string) vpoolv1alpha1.VirtualDisk {
		v := vpoolv1alpha1.VirtualDisk{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		v.Spec.PoolRef.Name, v.Spec.StorageRepository, v.Spec.Size = "p", "nfs", resource.MustParse("1Gi")
		v.Status.Volume = volume
		return v
	}
	pool := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	nd := NewDump(pool, nil, nil, []vpoolv1alpha1.VirtualDisk{vdi("a", "/srv/images/ns_a"), vdi("b", "")}, nil, time.Now())
	var buf bytes.Buffer
	g.Expect(writeDump(&buf, nd)).To(Succeed())
	var doc struct {
		VirtualDisks []map[string]json.RawMessage `json:"virtualDisks"`
	}
	g.Expect(json.Unmarshal(buf.Bytes(), &doc)).To(Succeed())
	g.Expect(doc.VirtualDisks).To(HaveLen(2))
	g.Expect(string(doc.VirtualDisks[0]["status"])).To(Equal(`{"volume":"/srv/images/ns_a"}`))
	g.Expect(doc.VirtualDisks[1]).NotTo(HaveKey("status"), "written as before volumes were kept")
	back, err := readDump(bytes.NewReader(buf.Bytes()))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(back.VirtualDisks[0].Status.Volume).To(Equal("/srv/images/ns_a"))
}
