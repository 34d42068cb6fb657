// Package argocd_test runs the Argo CD health checks of
// resource_customizations with gopher-lua, the interpreter Argo CD embeds,
// on poolkeeper objects read back from a real API server (envtest) in each
// state their conditions can take.
package argocd_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

var k8s client.Client

func TestMain(m *testing.M) {
	cfg, stop, err := testutil.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k8s, err = client.New(cfg, client.Options{Scheme: testutil.Scheme})
	if err != nil {
		stop()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// health runs the kind's health.lua on obj as Argo CD does: obj is a
// global table, the script returns {status, message}.
func health(t *testing.T, kind string, obj map[string]any) (string, string) {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	script := filepath.Join("resource_customizations", vpoolv1alpha1.GroupVersion.Group, kind, "health.lua")
	if err := L.DoFile(script); err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	hs, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("%s returned %s, not a table", script, L.Get(-1).Type())
	}
	return lua.LVAsString(hs.RawGetString("status")), lua.LVAsString(hs.RawGetString("message"))
}

// toLua converts decoded JSON to Lua values, as Argo CD does.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	}
	panic(fmt.Sprintf("cannot convert %T", v))
}

func cond(t string, st metav1.ConditionStatus, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: t, Status: st, Reason: reason, Message: msg}
}

var (
	readyTrue  = cond("Ready", metav1.ConditionTrue, "Succeeded", "")
	working    = cond("Reconciling", metav1.ConditionTrue, "Reconciling", "working on it")
	stalledBad = cond("Stalled", metav1.ConditionTrue, "InvalidSpec", "spec.x names nothing")
)

func poolRef() vpoolv1alpha1.PoolReference { return vpoolv1alpha1.PoolReference{Name: "p"} }

// objects of each kind, with a valid spec.
var kinds = map[string]func() client.Object{
	"Pool": func() client.Object { return &vpoolv1alpha1.Pool{} },
	"Host": func() client.Object {
		return &vpoolv1alpha1.Host{Spec: vpoolv1alpha1.HostSpec{PoolRef: poolRef(), Address: "h.example",
			Capacity: vpoolv1alpha1.HostCapacity{CPU: resource.MustParse("8"), Memory: resource.MustParse("32Gi")}}}
	},
	"StorageRepository": func() client.Object {
		return &vpoolv1alpha1.StorageRepository{Spec: vpoolv1alpha1.StorageRepositorySpec{PoolRef: poolRef(), Type: "nfs", Shared: true}}
	},
	"VirtualDisk": func() client.Object {
		return &vpoolv1alpha1.VirtualDisk{Spec: vpoolv1alpha1.VirtualDiskSpec{PoolRef: poolRef(), StorageRepository: "nfs",
			Size: resource.MustParse("1Gi")}}
	},
	"VirtualMachine": func() client.Object {
		return &vpoolv1alpha1.VirtualMachine{Spec: vpoolv1alpha1.VirtualMachineSpec{PoolRef: poolRef()}}
	},
	"PoolBackup": func() client.Object {
		return &vpoolv1alpha1.PoolBackup{Spec: vpoolv1alpha1.PoolBackupSpec{PoolRef: poolRef(),
			Encryption: vpoolv1alpha1.BackupEncryption{KeySecretRef: vpoolv1alpha1.LocalObjectReference{Name: "k"}}}}
	},
	"VirtualAppliance": func() client.Object {
		return &vpoolv1alpha1.VirtualAppliance{Spec: vpoolv1alpha1.VirtualApplianceSpec{PoolRef: poolRef()}}
	},
	"Recovery": func() client.Object {
		return &vpoolv1alpha1.Recovery{Spec: vpoolv1alpha1.RecoverySpec{PoolRef: poolRef(),
			Sources: []vpoolv1alpha1.RecoverySource{{BackupName: "b"}}, VirtualMachines: []string{"vm"}}}
	},
	"BackupLocation": func() client.Object {
		return &vpoolv1alpha1.BackupLocation{Spec: vpoolv1alpha1.BackupLocationSpec{S3: vpoolv1alpha1.S3Storage{
			Endpoint: "https://s3.example", Bucket: "backups", CredentialsSecretRef: vpoolv1alpha1.LocalObjectReference{Name: "s3"}}}}
	},
}

type state struct {
	name string
	// phase is written to status.phase (Host, PoolBackup).
	phase string
	conds []metav1.Condition
	want  string
}

// common are the states of a kind without a phase; the first, every kind's.
var common = []state{
	{name: "new, not seen by the operator", want: "Progressing"},
	{name: "Ready", conds: []metav1.Condition{readyTrue}, want: "Healthy"},
	{name: "working", conds: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "Starting", "starting"), working}, want: "Progressing"},
	{name: "stalled on a spec error", conds: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "InvalidSpec", "bad"), stalledBad},
		want: "Degraded"},
	{name: "not Ready, waiting on the world", conds: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "HostDown", "its host is down")},
		want: "Degraded"},
}

// byKind are the states that depend on a kind's phase.
var byKind = map[string][]state{
	"Host": {
		{name: "Pending", phase: "Pending", conds: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "AwaitingHeartbeat", "")}, want: "Progressing"},
		{name: "Live", phase: "Live", conds: []metav1.Condition{readyTrue}, want: "Healthy"},
		{name: "Unreachable", phase: "Unreachable", conds: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "HeartbeatStale", "")}, want: "Degraded"},
		{name: "Fencing", phase: "Fencing", conds: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "AwaitingSafeTime", ""), working}, want: "Progressing"},
		{name: "Fenced", phase: "Fenced", conds: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "AgentWatchdog", "")}, want: "Degraded"},
		{name: "BMC refuses the credentials", phase: "Live", conds: []metav1.Condition{readyTrue,
			cond("Stalled", metav1.ConditionTrue, "BMCUnauthorized", "fix the Secret")}, want: "Degraded"},
		{name: "Forgotten", phase: "Forgotten", conds: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "Forgotten", "")}, want: "Progressing"},
	},
	"PoolBackup": {
		{name: "InProgress", phase: "InProgress", conds: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "InProgress", ""), working}, want: "Progressing"},
		{name: "Completed", phase: "Completed", conds: []metav1.Condition{readyTrue}, want: "Healthy"},
		{name: "Failed", phase: "Failed", conds: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "KeyMissing", "no key"),
			cond("Stalled", metav1.ConditionTrue, "KeyMissing", "no key")}, want: "Degraded"},
	},
}

func TestHealthChecks(t *testing.T) {
	ctx := context.Background()
	ns := "argocd-health"
	if err := k8s.Create(ctx, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": ns}}}); err != nil {
		t.Fatal(err)
	}
	n := 0
	for kind, newObj := range kinds {
		states := common
		if phased, ok := byKind[kind]; ok {
			// A kind with a phase: its states are those of the phase.
			states = append([]state{common[0]}, phased...)
		}
		for _, st := range states {
			n++
			t.Run(kind+"/"+st.name, func(t *testing.T) {
				g := NewWithT(t)
				obj := newObj()
				obj.SetNamespace(ns)
				obj.SetName(fmt.Sprintf("obj-%d", n))
				g.Expect(k8s.Create(ctx, obj)).To(Succeed())
				if st.phase != "" || len(st.conds) > 0 {
					writeStatus(g, obj, st)
				}
				u := &unstructured.Unstructured{}
				u.SetGroupVersionKind(vpoolv1alpha1.GroupVersion.WithKind(kind))
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), u)).To(Succeed())
				status, msg := health(t, kind, u.Object)
				g.Expect(status).To(Equal(st.want), "message %q", msg)
				g.Expect(msg).NotTo(BeEmpty())
			})
		}
	}
	// Every kind with a CRD has a health check.
	crds, err := filepath.Glob(filepath.Join(testutil.RepoRoot(), "config", "crd", "bases", "*.yaml"))
	if err != nil || len(crds) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	for _, f := range crds {
		var crd struct {
			Spec struct {
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
			} `json:"spec"`
		}
		raw, err := os.ReadFile(f)
		if err == nil {
			err = yaml.Unmarshal(raw, &crd)
		}
		if err != nil {
			t.Fatal(err)
		}
		kind := crd.Spec.Names.Kind
		if _, err := os.Stat(filepath.Join("resource_customizations", vpoolv1alpha1.GroupVersion.Group, kind, "health.lua")); err != nil {
			t.Errorf("kind %s has no resource_customizations/%s/%s/health.lua", kind, vpoolv1alpha1.GroupVersion.Group, kind)
		}
	}
}

// writeStatus writes the state's phase and conditions through the status
// subresource, as the operator does.
func writeStatus(g Gomega, obj client.Object, st state) {
	var conds *[]metav1.Condition
	switch o := obj.(type) {
	case *vpoolv1alpha1.Pool:
		conds = &o.Status.Conditions
	case *vpoolv1alpha1.Host:
		o.Status.Phase, conds = vpoolv1alpha1.HostPhase(st.phase), &o.Status.Conditions
	case *vpoolv1alpha1.StorageRepository:
		conds = &o.Status.Conditions
	case *vpoolv1alpha1.VirtualDisk:
		conds = &o.Status.Conditions
	case *vpoolv1alpha1.VirtualMachine:
		conds = &o.Status.Conditions
	case *vpoolv1alpha1.PoolBackup:
		o.Status.Phase, conds = vpoolv1alpha1.PoolBackupPhase(st.phase), &o.Status.Conditions
	case *vpoolv1alpha1.VirtualAppliance:
		conds = &o.Status.Conditions
	case *vpoolv1alpha1.Recovery:
		conds = &o.Status.Conditions
	case *vpoolv1alpha1.BackupLocation:
		conds = &o.Status.Conditions
	}
	for _, c := range st.conds {
		c.LastTransitionTime = metav1.NewTime(time.Now().Truncate(time.Second))
		meta.SetStatusCondition(conds, c)
	}
	g.Expect(k8s.Status().Update(context.Background(), obj)).To(Succeed())
}

// TestGenericChecksAreOne: Argo CD needs one self-contained script per kind;
// the kinds without a phase share the same rules, word for word.
func TestGenericChecksAreOne(t *testing.T) {
	g := NewWithT(t)
	dir := filepath.Join("resource_customizations", vpoolv1alpha1.GroupVersion.Group)
	read := func(kind string) string {
		b, err := os.ReadFile(filepath.Join(dir, kind, "health.lua"))
		g.Expect(err).NotTo(HaveOccurred())
		return strings.Replace(string(b), "poolkeeper "+kind+",", "poolkeeper KIND,", 1)
	}
	want := read("Pool")
	for _, kind := range []string{"StorageRepository", "VirtualDisk", "VirtualMachine", "VirtualAppliance", "BackupLocation", "Recovery"} {
		g.Expect(read(kind)).To(Equal(want), "%s/health.lua differs from Pool's", kind)
	}
}
