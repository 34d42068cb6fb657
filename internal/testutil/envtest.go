package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Scheme knows the built-in kinds and poolkeeper's.
var Scheme = newScheme()

func newScheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(vpoolv1alpha1.AddToScheme(s))
	return s
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Assets returns the directory holding etcd and kube-apiserver: the
// KUBEBUILDER_ASSETS variable when set, otherwise the cache that
// hack/envtest-toolchain.sh fills (building the binaries the first time).
func Assets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	out, err := exec.Command(filepath.Join(RepoRoot(), "hack", "envtest-toolchain.sh")).Output()
	if err != nil {
		return "", fmt.Errorf("building envtest binaries with hack/envtest-toolchain.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// NewEnvironment describes an envtest control plane with poolkeeper's CRDs.
// Start it with Start and stop it with Stop.
func NewEnvironment() (*envtest.Environment, error) {
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	return &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme,
	}, nil
}

// Start starts an envtest control plane with poolkeeper's CRDs and returns
// its config and a function that stops it. A control plane that failed half
// way is stopped before Start returns.
func Start() (*rest.Config, func(), error) {
	env, err := NewEnvironment()
	if err != nil {
		return nil, nil, err
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, nil, fmt.Errorf("starting envtest: %w", err)
	}
	return cfg, func() { _ = env.Stop() }, nil
}
