package backup_test

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// The envtest control plane is started by the first test that needs it
// (cluster), so that the pure tests run without one, and stopped here.
var (
	envOnce sync.Once
	env     *envtest.Environment
	k8s     client.Client
	envErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	os.Exit(code)
}

// cluster returns a client of the envtest API server, starting it once.
func cluster(t *testing.T) client.Client {
	t.Helper()
	envOnce.Do(func() {
		e, err := testutil.NewEnvironment()
		if err != nil {
			envErr = err
			return
		}
		cfg, err := e.Start()
		if err != nil {
			_ = e.Stop()
			envErr = fmt.Errorf("starting envtest: %w", err)
			return
		}
		env = e
		k8s, envErr = client.New(cfg, client.Options{Scheme: testutil.Scheme})
	})
	if envErr != nil {
		t.Fatal(envErr)
	}
	return k8s
}
