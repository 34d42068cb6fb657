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

// manager is the manager's ServiceAccount as the rendered RBAC binds it.
const manager = "system:serviceaccount:poolkeeper-system:poolkeeper-manager"

// kubectlFunc runs kubectl against an API server with stdin, returning its
// combined output.
type kubectlFunc func(stdin string, args ...string) (string, error)

// applied starts an API server, applies `kubectl kustomize config/<overlay>`
// to it for real, and returns a kubectl of a cluster admin there.
func applied(t *testing.T, overlay string) kubectlFunc {
	t.Helper()
	g := NewWithT(t)
	env, err := testutil.NewEnvironment()
	g.Expect(err).NotTo(HaveOccurred())
	if _, err := env.Start(); err != nil {
		_ = env.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	user, err := env.AddUser(envtest.User{Name: "deployer", Groups: []string{"system:masters"}}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	kubeconfig, err := user.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(os.WriteFile(path, kubeconfig, 0o600)).To(Succeed())
	kubectl := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", path}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	rendered, err := exec.Command("kubectl", "kustomize", filepath.Join(testutil.RepoRoot(), "config", overlay)).Output()
	g.Expect(err).NotTo(HaveOccurred(), "kubectl kustomize config/"+overlay)
	out, err := kubectl(string(rendered), "apply", "--server-side", "-f", "-")
	g.Expect(err).NotTo(HaveOccurred(), out)
	return kubectl
}

// canI asks the API server whether the manager may do what args say
// (`kubectl auth can-i ARGS --as MANAGER`).
func canI(g Gomega, kubectl kubectlFunc, args ...string) bool {
	out, err := kubectl("", append([]string{"auth", "can-i", "--as", manager}, args...)...)
	// The answer is the last line (a warning may come before it).
	lines := strings.Split(strings.TrimSpace(out), "\n")
	answer := strings.TrimSpace(lines[len(lines)-1])
	g.Expect(answer).To(Or(Equal("yes"), HavePrefix("no")), "kubectl auth can-i %v", args)
	return err == nil && answer == "yes"
}

// TestManagerReadsSecretsOnlyByName: the manager of config/default may get a
// Secret by its name but not list or watch Secrets (a list returns every
// Secret's data), in any namespace.
func TestManagerReadsSecretsOnlyByName(t *testing.T) {
	g := NewWithT(t)
	kubectl := applied(t, "default")

	g.Expect(canI(g, kubectl, "list", "secrets", "-A")).To(BeFalse(), "list secrets -A")
	g.Expect(canI(g, kubectl, "watch", "secrets", "-A")).To(BeFalse(), "watch secrets -A")
	g.Expect(canI(g, kubectl, "list", "secrets", "-n", "pools")).To(BeFalse(), "list secrets -n pools")
	g.Expect(canI(g, kubectl, "get", "secrets", "-A")).To(BeTrue(), "get secrets -A")
	for _, verb := range []string{"create", "update", "delete"} {
		g.Expect(canI(g, kubectl, verb, "secrets", "-n", "pools")).To(BeTrue(), verb+" secrets")
	}
	g.Expect(canI(g, kubectl, "list", "pools.vpool.poolkeeper.io", "-A")).To(BeTrue(), "list pools -A")
}

// TestNamespacedManagerStaysInItsNamespace: the manager of config/namespaced
// may work in its own namespace only, and watches only it.
func TestNamespacedManagerStaysInItsNamespace(t *testing.T) {
	g := NewWithT(t)
	kubectl := applied(t, "namespaced")

	own, other := []string{"-n", "poolkeeper-system"}, []string{"-n", "pools"}
	for _, what := range [][]string{
		{"get", "secrets"}, {"create", "secrets"}, {"delete", "secrets"},
		{"list", "pools.vpool.poolkeeper.io"}, {"watch", "hosts.vpool.poolkeeper.io"},
		{"patch", "virtualdisks.vpool.poolkeeper.io", "--subresource", "status"},
		{"delete", "leases.coordination.k8s.io"}, {"create", "events.events.k8s.io"},
	} {
		g.Expect(canI(g, kubectl, append(what, own...)...)).To(BeTrue(), "%v in its own namespace", what)
		g.Expect(canI(g, kubectl, append(what, other...)...)).To(BeFalse(), "%v in another namespace", what)
	}
	g.Expect(canI(g, kubectl, "list", "secrets", "-A")).To(BeFalse(), "list secrets -A")
	g.Expect(canI(g, kubectl, append([]string{"list", "secrets"}, own...)...)).To(BeFalse(), "list secrets in its own namespace")
	g.Expect(canI(g, kubectl, "list", "pools.vpool.poolkeeper.io", "-A")).To(BeFalse(), "list pools -A")
	// CertificateSigningRequests are cluster-scoped: the agents' certificates
	// are still approved.
	g.Expect(canI(g, kubectl, "watch", "certificatesigningrequests.certificates.k8s.io")).To(BeTrue(), "watch CSRs")

	out, err := kubectl("", "get", "deployment", "poolkeeper-manager", "-n", "poolkeeper-system",
		"-o", "jsonpath={.spec.template.spec.containers[0].args}")
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring("--namespace=$(POD_NAMESPACE)"))
}
