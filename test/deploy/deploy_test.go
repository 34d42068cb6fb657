// Package deploy_test checks that the deployable operator (config/default)
// renders and is accepted by a real API server.
package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// TestDefaultRendersAndApplies renders config/default with kubectl kustomize
// and applies it to envtest with server-side dry-run: the namespace, the
// ServiceAccount, the RBAC, the manager Deployment and the metrics Service
// must all be accepted. It also checks the Deployment's restricted security.
func TestDefaultRendersAndApplies(t *testing.T) {
	g := NewWithT(t)
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not installed")
	}
	env, err := testutil.NewEnvironment()
	g.Expect(err).NotTo(HaveOccurred())
	if _, err := env.Start(); err != nil {
		_ = env.Stop()
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	user, err := env.AddUser(envtest.User{Name: "deployer", Groups: []string{"system:masters"}}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	kubeconfig, err := user.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(os.WriteFile(path, kubeconfig, 0o600)).To(Succeed())

	rendered, err := exec.Command("kubectl", "kustomize", filepath.Join(testutil.RepoRoot(), "config", "default")).Output()
	g.Expect(err).NotTo(HaveOccurred(), "kubectl kustomize config/default")
	manifest := string(rendered)
	for _, want := range []string{"kind: Namespace", "kind: ServiceAccount", "kind: ClusterRole", "kind: ClusterRoleBinding",
		"kind: Deployment", "kind: Service", "kind: CustomResourceDefinition", "namespace: poolkeeper-system",
		"runAsNonRoot: true", "readOnlyRootFilesystem: true", "allowPrivilegeEscalation: false", "type: RuntimeDefault",
		"- ALL", "--leader-elect"} {
		g.Expect(manifest).To(ContainSubstring(want))
	}

	kubectl := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", path}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	// The namespace must exist for a dry run of what lives in it.
	out, err := kubectl("", "create", "namespace", "poolkeeper-system")
	g.Expect(err).NotTo(HaveOccurred(), out)
	out, err = kubectl(manifest, "apply", "--server-side", "--dry-run=server", "-f", "-")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring("deployment.apps/poolkeeper-manager serverside-applied (server dry run)"))
	g.Expect(out).To(ContainSubstring("clusterrole.rbac.authorization.k8s.io/poolkeeper-manager serverside-applied (server dry run)"))
}
