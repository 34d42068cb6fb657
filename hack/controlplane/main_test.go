package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// up is how long a control plane may take to start on a loaded machine.
const up = 4 * time.Minute

// TestRestartAfterSIGKILL is `make run` killed twice, as a developer does it:
// first bin/controlplane itself with SIGKILL (its etcd and kube-apiserver
// survive), then make and hack/run.sh (the control plane and its manager
// survive). Each next start stops exactly what the earlier run left, serves a
// working API server, and leaves alone a process that merely names the
// directory (a `kubectl --kubeconfig bin/embedded/kubeconfig -w`).
func TestRestartAfterSIGKILL(t *testing.T) {
	g := NewWithT(t)
	bin, dir, cp := controlPlaneOf(t)
	kubeconfig := filepath.Join(dir, "kubeconfig")

	bystander := exec.Command("sh", "-c", "sleep 600", "kubectl", "--kubeconfig", kubeconfig, "get", "vhost", "-w")
	bystander.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	g.Expect(bystander.Start()).To(Succeed())
	t.Cleanup(func() { _ = bystander.Process.Kill(); _ = bystander.Wait() })

	// 1. SIGKILL of bin/controlplane: etcd and kube-apiserver outlive it.
	first := exec.Command(bin, cp("sleep", "600")[1:]...)
	first.Stderr = logFile(t, "first")
	g.Expect(first.Start()).To(Succeed())
	waitServing(t, dir, 0)
	etcd, apiserver, manager := pidOf(t, dir, "etcd"), pidOf(t, dir, "kube-apiserver"), pidOf(t, dir, "manager")
	g.Expect(first.Process.Kill()).To(Succeed())
	_ = first.Wait()
	g.Expect(running(etcd)).To(BeTrue(), "etcd outlives a SIGKILLed control plane")
	g.Expect(running(apiserver)).To(BeTrue(), "kube-apiserver outlives a SIGKILLed control plane")
	g.Eventually(func() bool { return running(manager) }, up).Should(BeFalse(), "the manager dies with its control plane")
	g.Expect(kubeconfig).To(BeAnExistingFile())

	// 2. The next start stops them, makes new certificates and serves. It is
	// started as hack/run.sh does it (setsid) by a shell standing for make
	// and hack/run.sh.
	parent := exec.Command("bash", "-c", `setsid "$@" & wait`, "run.sh")
	parent.Args = append(parent.Args, cp("sleep", "600")...)
	parent.Stderr = logFile(t, "second")
	g.Expect(parent.Start()).To(Succeed())
	second := waitServing(t, dir, first.Process.Pid)
	g.Expect(running(etcd)).To(BeFalse(), "the earlier run's etcd is stopped")
	g.Expect(running(apiserver)).To(BeFalse(), "the earlier run's kube-apiserver is stopped")
	expectAPI(t, kubeconfig)
	g.Expect(running(bystander.Process.Pid)).To(BeTrue(), "a process that only names the directory is not the control plane's")

	// 3. make and hack/run.sh SIGKILLed: the control plane and its manager
	// run on (holding the manager's ports); the next start stops them, then
	// serves.
	g.Expect(parent.Process.Kill()).To(Succeed())
	_ = parent.Wait()
	etcd, apiserver, manager = pidOf(t, dir, "etcd"), pidOf(t, dir, "kube-apiserver"), pidOf(t, dir, "manager")
	g.Expect(running(second) && running(manager)).To(BeTrue(), "the control plane and its manager outlive their parent")
	third := exec.Command(bin, cp("sleep", "600")[1:]...)
	third.Stderr = logFile(t, "third")
	g.Expect(third.Start()).To(Succeed())
	g.Expect(waitServing(t, dir, second)).To(Equal(third.Process.Pid))
	for name, pid := range map[string]int{"control plane": second, "manager": manager, "etcd": etcd, "kube-apiserver": apiserver} {
		g.Expect(running(pid)).To(BeFalse(), "the earlier run's %s (pid %d) is stopped", name, pid)
	}
	expectAPI(t, kubeconfig)
	g.Expect(running(bystander.Process.Pid)).To(BeTrue())

	// 4. SIGTERM stops everything and removes the kubeconfig.
	etcd, apiserver = pidOf(t, dir, "etcd"), pidOf(t, dir, "kube-apiserver")
	g.Expect(third.Process.Signal(syscall.SIGTERM)).To(Succeed())
	g.Expect(third.Wait()).To(Succeed())
	g.Expect(running(etcd) || running(apiserver)).To(BeFalse())
	g.Expect(kubeconfig).NotTo(BeAnExistingFile())
	g.Expect(running(bystander.Process.Pid)).To(BeTrue())
}

// TestKeepsItsPartsRunning kills each part of a running control plane with
// SIGKILL, as a crash or an OOM kill would: etcd, kube-apiserver and the
// command (the manager) are each started again, the cluster's state and the
// kubeconfig survive, and SIGTERM then stops everything, the processes
// started again included.
func TestKeepsItsPartsRunning(t *testing.T) {
	g := NewWithT(t)
	bin, dir, args := controlPlaneOf(t)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	cp := exec.Command(bin, args("sleep", "600")[1:]...)
	cp.Stderr = logFile(t, "kept")
	g.Expect(cp.Start()).To(Succeed())
	waitServing(t, dir, 0)
	expectAPI(t, kubeconfig)
	cs := clientFor(t, kubeconfig)
	ctx := context.Background()
	_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept"},
		Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())

	for _, name := range []string{"etcd", "kube-apiserver", "manager"} {
		old := pidOf(t, dir, name)
		g.Expect(syscall.Kill(old, syscall.SIGKILL)).To(Succeed())
		var pid int
		g.Eventually(func() bool {
			pid, _ = readPidFile(dir, name)
			return pid != old && running(pid)
		}, up, 100*time.Millisecond).Should(BeTrue(), "%s started again", name)
		g.Eventually(func() (string, error) {
			c, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "kept", metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			return c.Data["k"], nil
		}, up, 200*time.Millisecond).Should(Equal("v"), "the state and the kubeconfig survive a killed %s", name)
		g.Expect(running(cp.Process.Pid)).To(BeTrue(), "the control plane runs on after its %s was killed", name)
	}

	parts := []int{pidOf(t, dir, "etcd"), pidOf(t, dir, "kube-apiserver"), pidOf(t, dir, "manager")}
	g.Expect(cp.Process.Signal(syscall.SIGTERM)).To(Succeed())
	g.Expect(cp.Wait()).To(Succeed())
	for _, pid := range parts {
		g.Expect(running(pid)).To(BeFalse(), "pid %d is stopped with the control plane", pid)
	}
	g.Expect(kubeconfig).NotTo(BeAnExistingFile())
}

// A command whose first run fails at once (a bad flag) ends the control
// plane with its exit code, and stops etcd and kube-apiserver: it is not
// started again for ever.
func TestFirstRunFailingEndsTheControlPlane(t *testing.T) {
	g := NewWithT(t)
	bin, dir, args := controlPlaneOf(t)
	cp := exec.Command(bin, args("sh", "-c", "echo 'unknown flag: --bogus' >&2; exit 2")[1:]...)
	cp.Stderr = logFile(t, "failing")
	err := cp.Run()
	var exit *exec.ExitError
	g.Expect(errors.As(err, &exit)).To(BeTrue(), "the control plane fails: %v", err)
	g.Expect(exit.ExitCode()).To(Equal(2))
	g.Expect(scan(func(p proc) bool {
		return ownerOf("etcd")(p, dir) || ownerOf("kube-apiserver")(p, dir)
	})).To(BeEmpty(), "etcd and kube-apiserver are stopped")
}

func clientFor(t *testing.T, kubeconfig string) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// controlPlaneOf builds bin/controlplane for a test and gives its binary,
// a directory of its own (whatever a failed test leaves there is stopped),
// and its command line running a command.
func controlPlaneOf(t *testing.T) (bin, dir string, args func(command ...string) []string) {
	t.Helper()
	assets, err := testutil.Assets()
	if err != nil {
		t.Fatal(err)
	}
	bin = buildControlPlane(t)
	dir = filepath.Join(t.TempDir(), "embedded")
	t.Cleanup(func() { _ = stopLeftovers(dir, 5*time.Second) }) // when the test fails half way
	return bin, dir, func(command ...string) []string {
		return append([]string{bin, "--assets", assets, "--crds", filepath.Join(testutil.RepoRoot(), "config", "crd", "bases"),
			"--dir", dir, "--stop-timeout", "20s", "--"}, command...)
	}
}

func buildControlPlane(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "controlplane")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// waitServing waits until a control plane other than old has recorded
// itself, written its kubeconfig (a stale one is removed before the pid is
// recorded) and started its command, and returns its pid.
func waitServing(t *testing.T, dir string, old int) int {
	t.Helper()
	var pid int
	NewWithT(t).Eventually(func(g Gomega) {
		pid, _ = readPidFile(dir, "controlplane")
		g.Expect(pid).NotTo(BeElementOf(0, old))
		g.Expect(running(pid)).To(BeTrue(), "control plane %d exited", pid)
		g.Expect(filepath.Join(dir, "kubeconfig")).To(BeAnExistingFile())
		g.Expect(filepath.Join(dir, "manager.pid")).To(BeAnExistingFile())
	}, up, 200*time.Millisecond).Should(Succeed())
	return pid
}

func pidOf(t *testing.T, dir, name string) int {
	t.Helper()
	pid, ok := readPidFile(dir, name)
	if !ok {
		t.Fatalf("no pid file for %s in %s", name, dir)
	}
	return pid
}

func running(pid int) bool { _, ok := readProc(pid); return ok }

// expectAPI checks that the kubeconfig reaches an API server that serves the
// CRDs.
func expectAPI(t *testing.T, kubeconfig string) {
	t.Helper()
	g := NewWithT(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	cs, err := kubernetes.NewForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() error {
		_, err := cs.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{})
		return err
	}, up).Should(Succeed())
	res, err := cs.Discovery().ServerResourcesForGroupVersion("vpool.poolkeeper.io/v1alpha1")
	g.Expect(err).NotTo(HaveOccurred())
	var kinds []string
	for _, r := range res.APIResources {
		kinds = append(kinds, r.Kind)
	}
	g.Expect(kinds).To(ContainElements("Pool", "Host", "VirtualMachine"))
}

// logFile is where one run's stderr goes (a file, not a pipe: a process
// that outlives its parent keeps it open); it is logged when the test ends.
func logFile(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b, _ := os.ReadFile(f.Name())
		t.Logf("%s control plane:\n%s", name, b)
		_ = f.Close()
	})
	return f
}

func TestOwnership(t *testing.T) {
	dir := "/work/main/bin/embedded"
	cases := map[string]struct {
		role string
		p    proc
		want bool
	}{
		"control plane started by hack/run.sh with a relative --dir": {
			role: "controlplane",
			p:    proc{exe: "/work/main/bin/controlplane", cwd: "/work/main", args: []string{"bin/controlplane", "--assets", "/a", "--dir", "bin/embedded", "--", "bin/poolkeeper"}},
			want: true,
		},
		"control plane with the default --dir": {
			role: "controlplane",
			p:    proc{exe: "/work/main/bin/controlplane", cwd: "/work/main", args: []string{"bin/controlplane"}},
			want: true,
		},
		"control plane of another directory": {
			role: "controlplane",
			p:    proc{exe: "/work/main/bin/controlplane", cwd: "/work/main", args: []string{"bin/controlplane", "-dir=/tmp/e2e-x"}},
		},
		"a --dir of the command, after --, is not the control plane's": {
			role: "controlplane",
			p:    proc{exe: "/work/main/bin/controlplane", cwd: "/tmp", args: []string{"bin/controlplane", "--dir=/tmp/x", "--", "tool", "--dir", dir}},
		},
		"etcd of the directory": {
			role: "etcd",
			p:    proc{exe: "/root/.cache/poolkeeper/envtest/k8s/etcd", args: []string{"etcd", "--data-dir=" + dir + "/etcd", "--listen-client-urls=http://127.0.0.1:1"}},
			want: true,
		},
		"a demo agent naming the kubeconfig": {
			role: "etcd",
			p:    proc{exe: "/work/main/bin/poolkeeper-agent", args: []string{"bin/poolkeeper-agent", "--kubeconfig", dir + "/kubeconfig", "--data-dir=" + dir + "/etcd"}},
		},
		"kube-apiserver of the directory": {
			role: "kube-apiserver",
			p:    proc{exe: "/c/kube-apiserver", args: []string{"kube-apiserver", "--cert-dir=" + dir + "/apiserver"}},
			want: true,
		},
		"kube-apiserver of another directory": {
			role: "kube-apiserver",
			p:    proc{exe: "/c/kube-apiserver", args: []string{"kube-apiserver", "--cert-dir=/tmp/k8s_test_framework_1/apiserver"}},
		},
		"the manager the control plane ran": {
			role: "manager",
			p:    proc{exe: "/work/main/bin/poolkeeper", env: map[string]string{dirEnv: dir, "KUBECONFIG": dir + "/kubeconfig"}},
			want: true,
		},
		"a kubectl with KUBECONFIG exported": {
			role: "manager",
			p:    proc{exe: "/usr/bin/kubectl", env: map[string]string{"KUBECONFIG": dir + "/kubeconfig"}},
		},
	}
	byName := map[string]role{}
	for _, r := range roles(time.Second) {
		byName[r.name] = r
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			NewWithT(t).Expect(byName[tc.role].owns(tc.p, dir)).To(Equal(tc.want))
		})
	}
}

func TestFlagValue(t *testing.T) {
	g := NewWithT(t)
	args := []string{"cp", "-assets", "/a", "--dir=/d", "-crds=/c", "--stop-timeout", "1s", "--", "--x", "y"}
	g.Expect(flagValue(args, "assets")).To(Equal("/a"))
	g.Expect(flagValue(args, "dir")).To(Equal("/d"))
	g.Expect(flagValue(args, "crds")).To(Equal("/c"))
	g.Expect(flagValue(args, "x")).To(BeEmpty())
	g.Expect(flagValue(args, "stop-timeout")).To(Equal("1s"))
}
