// Command controlplane runs poolkeeper on an embedded control plane for
// development: it starts etcd and kube-apiserver (the envtest binaries built by
// hack/envtest-toolchain.sh), installs the CRDs, writes an admin kubeconfig,
// runs the given command (the manager) with KUBECONFIG pointing at it, and
// stops everything when that command exits or on SIGINT/SIGTERM.
//
//	controlplane --assets DIR --crds config/crd/bases --dir bin/embedded -- bin/poolkeeper [flags]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

func main() {
	code, err := run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "controlplane: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func run() (int, error) {
	assets := flag.String("assets", os.Getenv("KUBEBUILDER_ASSETS"), "Directory holding the etcd and kube-apiserver binaries.")
	crds := flag.String("crds", "config/crd/bases", "Directory of CRD manifests to install.")
	dir := flag.String("dir", "bin/embedded", "Directory for the kubeconfig and the etcd data (wiped on every start).")
	stopTimeout := flag.Duration("stop-timeout", 40*time.Second, "How long the command may take to exit after SIGTERM.")
	flag.Parse()
	if *assets == "" {
		return 2, errors.New("--assets (or KUBEBUILDER_ASSETS) is required")
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return 1, err
	}
	dataDir := filepath.Join(absDir, "etcd")
	// A previous run killed with SIGKILL may have left etcd or kube-apiserver
	// behind; they are recognised by the data directory on their command line.
	killStale(absDir)
	if err := os.RemoveAll(dataDir); err != nil {
		return 1, fmt.Errorf("removing old etcd data: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return 1, err
	}
	defer func() { _ = os.RemoveAll(dataDir) }()

	env := &envtest.Environment{
		BinaryAssetsDirectory: *assets,
		CRDDirectoryPaths:     []string{*crds},
		ErrorIfCRDPathMissing: true,
	}
	// Fixed directories (rather than envtest's random ones) let killStale find
	// processes orphaned by an earlier run.
	certDir := filepath.Join(absDir, "apiserver")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return 1, err
	}
	defer func() { _ = os.RemoveAll(certDir) }()
	env.ControlPlane.Etcd = &envtest.Etcd{DataDir: dataDir}
	env.ControlPlane.APIServer = &envtest.APIServer{CertDir: certDir}
	fmt.Fprintln(os.Stderr, "controlplane: starting etcd and kube-apiserver")
	if _, err := env.Start(); err != nil {
		_ = env.Stop()
		return 1, fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() {
		fmt.Fprintln(os.Stderr, "controlplane: stopping etcd and kube-apiserver")
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "controlplane: stopping: %v\n", err)
		}
	}()

	admin, err := env.AddUser(envtest.User{Name: "poolkeeper-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return 1, fmt.Errorf("creating the admin user: %w", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return 1, fmt.Errorf("rendering the kubeconfig: %w", err)
	}
	kubeconfigPath := filepath.Join(absDir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return 1, fmt.Errorf("writing the kubeconfig: %w", err)
	}
	defer func() { _ = os.Remove(kubeconfigPath) }()
	fmt.Fprintf(os.Stderr, "controlplane: API server at %s\ncontrolplane: kubectl --kubeconfig %s get poolkeeper -A\n",
		env.Config.Host, kubeconfigPath)

	// Losing the terminal must not stop us before the control plane is stopped.
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if flag.NArg() == 0 {
		<-ctx.Done()
		return 0, nil
	}
	return runCommand(ctx, flag.Args(), kubeconfigPath, *stopTimeout)
}

// runCommand runs args with KUBECONFIG set until it exits or ctx is done, in
// which case it gets SIGTERM and, after timeout, SIGKILL.
func runCommand(ctx context.Context, args []string, kubeconfig string, timeout time.Duration) (int, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	// The command dies with us even if we are killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return 1, fmt.Errorf("starting %s: %w", args[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return exitCode(err), nil
	case <-ctx.Done():
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		return exitCode(err), nil
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		if err := <-done; err != nil {
			fmt.Fprintf(os.Stderr, "controlplane: %s: %v\n", args[0], err)
		}
		return 1, fmt.Errorf("%s did not exit within %s of SIGTERM; killed", args[0], timeout)
	}
}

func exitCode(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if exit.ExitCode() < 0 { // killed by a signal we sent
			return 0
		}
		return exit.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

// killStale kills processes whose command line mentions dir.
func killStale(dir string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), dir+"/") {
			continue
		}
		fmt.Fprintf(os.Stderr, "controlplane: killing process %d left by an earlier run\n", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
