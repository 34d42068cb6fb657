// Package charts_test checks what installs the operator on a cluster:
// dist/install.yaml (make build-installer) and the Helm chart poolkeeper,
// each applied to envtest with server-side dry-run.
package charts_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

var kubeconfig string

func TestMain(m *testing.M) {
	env, err := testutil.NewEnvironment()
	if err == nil {
		// The manifests under test install the CRDs themselves.
		env.CRDDirectoryPaths, env.ErrorIfCRDPathMissing = nil, false
		_, err = env.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer func() { _ = env.Stop() }()
		user, err := env.AddUser(envtest.User{Name: "installer", Groups: []string{"system:masters"}}, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		kc, err := user.KubeConfig()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		dir, err := os.MkdirTemp("", "charts-test")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = os.RemoveAll(dir) }()
		kubeconfig = filepath.Join(dir, "kubeconfig")
		if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func kubectl(stdin string, args ...string) (string, error) {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// dryRunApply applies manifest with server-side dry-run, the CRDs for real
// first (a dry run of a custom object needs its CRD installed), in
// namespace ns, and returns kubectl's output.
func dryRunApply(g Gomega, manifest, ns string) string {
	if _, err := kubectl("", "get", "namespace", ns); err != nil {
		out, err := kubectl("", "create", "namespace", ns)
		g.Expect(err).NotTo(HaveOccurred(), out)
	}
	var crds, rest []string
	for _, doc := range strings.Split(manifest, "\n---\n") {
		if strings.Contains(doc, "kind: CustomResourceDefinition\n") {
			crds = append(crds, doc)
		} else if strings.TrimSpace(doc) != "" {
			rest = append(rest, doc)
		}
	}
	g.Expect(crds).NotTo(BeEmpty(), "no CRDs in the manifest")
	out, err := kubectl(strings.Join(crds, "\n---\n"), "apply", "--server-side", "-f", "-")
	g.Expect(err).NotTo(HaveOccurred(), out)
	out, err = kubectl(strings.Join(rest, "\n---\n"), "apply", "--server-side", "--dry-run=server", "-f", "-")
	g.Expect(err).NotTo(HaveOccurred(), out)
	return out
}

// TestInstallerApplies runs make build-installer and applies
// dist/install.yaml: CRDs, RBAC, the manager with this release's image, its
// PodDisruptionBudget and metrics Service.
func TestInstallerApplies(t *testing.T) {
	g := NewWithT(t)
	dist := t.TempDir()
	// -o manifests: make build (and make test) have just regenerated them.
	cmd := exec.Command("make", "-s", "-o", "manifests", "build-installer", "DIST="+dist, "VERSION=v1.2.3")
	cmd.Dir = testutil.RepoRoot()
	out, err := cmd.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	raw, err := os.ReadFile(filepath.Join(dist, "install.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	manifest := string(raw)
	g.Expect(manifest).To(ContainSubstring("image: ghcr.io/poolkeeper/poolkeeper:v1.2.3"))
	for _, kind := range []string{"CustomResourceDefinition", "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
		"Deployment", "Service", "PodDisruptionBudget"} {
		g.Expect(manifest).To(ContainSubstring("kind: "+kind+"\n"), kind)
	}
	applied := dryRunApply(g, manifest, "poolkeeper-system")
	for _, want := range []string{"deployment.apps/poolkeeper-manager serverside-applied (server dry run)",
		"service/poolkeeper-metrics serverside-applied (server dry run)",
		"poddisruptionbudget.policy/poolkeeper-manager serverside-applied (server dry run)"} {
		g.Expect(applied).To(ContainSubstring(want))
	}
}
