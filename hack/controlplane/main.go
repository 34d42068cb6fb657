// Command controlplane runs poolkeeper on an embedded control plane for
// development: it starts etcd and kube-apiserver (the envtest binaries built by
// hack/envtest-toolchain.sh), installs the CRDs, writes an admin kubeconfig,
// runs the given command (the manager) with KUBECONFIG pointing at it, and
// stops everything on SIGINT/SIGTERM. Like a cluster, it keeps its parts
// running: etcd, kube-apiserver and the command are started again when they
// exit or are killed (the command with a back-off, as a Deployment's pod),
// with the same data, certificates and ports.
//
//	controlplane --assets DIR --crds config/crd/bases --dir bin/embedded -- bin/poolkeeper [flags]
//
// It records itself, etcd, kube-apiserver and the command in pid files in
// --dir. A run killed with SIGKILL (or whose parent was) leaves processes
// behind; the next run of the same --dir stops exactly those — each pid is
// checked to still be that binary with that directory — and starts afresh.
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
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/poolkeeper/poolkeeper/internal/version"
)

const defaultDir = "bin/embedded"

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

type options struct {
	assets, crds, dir string
	stopTimeout       time.Duration
	restart           bool
	command           []string
}

func parseFlags() (options, bool) {
	var o options
	flag.StringVar(&o.assets, "assets", os.Getenv("KUBEBUILDER_ASSETS"), "Directory holding the etcd and kube-apiserver binaries.")
	flag.StringVar(&o.crds, "crds", "config/crd/bases", "Directory of CRD manifests to install.")
	flag.StringVar(&o.dir, "dir", defaultDir,
		"Directory for the kubeconfig, the pid files, the certificates and the etcd data (wiped on every start).")
	flag.DurationVar(&o.stopTimeout, "stop-timeout", 40*time.Second, "How long the command may take to exit after SIGTERM.")
	flag.BoolVar(&o.restart, "restart", true, "Start COMMAND again whenever it exits, with a back-off (a first run that exits "+
		"within 10s ends the control plane); false: stop everything when it exits.")
	showVersion := flag.Bool("version", false, "Print the version and exit.")
	flag.Usage = func() {
		out := flag.CommandLine.Output()
		fmt.Fprintf(out, `controlplane runs etcd and kube-apiserver for development (make run), installs
the CRDs, writes an admin kubeconfig to DIR/kubeconfig and runs COMMAND with
KUBECONFIG set to it until SIGINT/SIGTERM arrives; then it stops COMMAND,
kube-apiserver and etcd. Without COMMAND it serves until then. etcd,
kube-apiserver and COMMAND are started again when they exit or are killed
(COMMAND with a back-off; see --restart), with the same data, certificates
and ports; their logs after a restart go to DIR/etcd.log and
DIR/kube-apiserver.log. Processes an earlier run of the same --dir left
behind (after a SIGKILL) are stopped first.

Usage: controlplane [flags] [-- COMMAND [ARGS...]]

`)
		flag.PrintDefaults()
	}
	flag.Parse()
	if *showVersion {
		fmt.Println("controlplane", version.String())
		return o, false
	}
	o.command = flag.Args()
	return o, true
}

func run() (int, error) {
	o, ok := parseFlags()
	if !ok {
		return 0, nil
	}
	if o.assets == "" {
		return 2, errors.New("--assets (or KUBEBUILDER_ASSETS) is required")
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return 1, err
	}
	if err := prepareDir(dir, o.stopTimeout); err != nil {
		return 1, err
	}
	defer removeState(dir)

	env := &envtest.Environment{
		BinaryAssetsDirectory: o.assets,
		CRDDirectoryPaths:     []string{o.crds},
		ErrorIfCRDPathMissing: true,
	}
	// Fixed directories (rather than envtest's random ones) let a later run
	// recognise the etcd and kube-apiserver of this one.
	env.ControlPlane.Etcd = &envtest.Etcd{DataDir: filepath.Join(dir, "etcd")}
	env.ControlPlane.APIServer = &envtest.APIServer{CertDir: filepath.Join(dir, "apiserver")}
	fmt.Fprintln(os.Stderr, "controlplane: starting etcd and kube-apiserver")
	_, err = env.Start()
	// Recorded even after a failed start, so that nothing is left unnamed.
	recordErr := recordChildren(dir)
	defer func() {
		fmt.Fprintln(os.Stderr, "controlplane: stopping etcd and kube-apiserver")
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "controlplane: stopping: %v\n", err)
		}
	}()
	if err != nil {
		return 1, fmt.Errorf("starting the control plane: %w", err)
	}
	if recordErr != nil {
		return 1, fmt.Errorf("recording the control plane's pids: %w", recordErr)
	}
	// etcd and kube-apiserver killed or crashed are started again, as a
	// cluster's supervisor would: the state and the kubeconfig survive.
	watchCtx, stopWatching := context.WithCancel(context.Background())
	keeper, err := keep(watchCtx, dir)
	if err != nil {
		stopWatching()
		return 1, fmt.Errorf("watching etcd and kube-apiserver: %w", err)
	}
	defer func() {
		stopWatching()
		keeper.stop(10 * time.Second)
	}()
	kubeconfig, err := writeKubeconfig(env, dir)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(os.Stderr, "controlplane: API server at %s\ncontrolplane: kubectl --kubeconfig %s get pools,hosts -A\n",
		env.Config.Host, kubeconfig)

	// Losing the terminal must not stop us before the control plane is stopped.
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(o.command) == 0 {
		<-ctx.Done()
		return 0, nil
	}
	return runCommand(ctx, o.command, dir, o.stopTimeout, o.restart)
}

// stateFiles are what a run leaves in its directory besides the etcd data:
// a stale kubeconfig would point kubectl at a dead server, and old
// certificates make envtest skip making a CA (and then panic).
func stateFiles(dir string) []string {
	files := []string{filepath.Join(dir, "etcd"), filepath.Join(dir, "apiserver"), filepath.Join(dir, "kubeconfig")}
	for _, r := range roles(0) {
		files = append(files, pidFile(dir, r.name))
	}
	return files
}

// prepareDir stops what an earlier run of dir left running, wipes its state
// and records this process as dir's control plane.
func prepareDir(dir string, stopTimeout time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := stopLeftovers(dir, stopTimeout); err != nil {
		return fmt.Errorf("stopping what an earlier run left: %w", err)
	}
	// (The logs of processes the earlier run started again go too.)
	for _, f := range append(stateFiles(dir), filepath.Join(dir, "etcd.log"), filepath.Join(dir, "kube-apiserver.log")) {
		if err := os.RemoveAll(f); err != nil {
			return fmt.Errorf("removing %s of an earlier run: %w", f, err)
		}
	}
	for _, d := range []string{"etcd", "apiserver"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	return writePidFile(dir, "controlplane", os.Getpid())
}

func removeState(dir string) {
	for _, f := range stateFiles(dir) {
		_ = os.RemoveAll(f)
	}
}

func writeKubeconfig(env *envtest.Environment, dir string) (string, error) {
	admin, err := env.AddUser(envtest.User{Name: "poolkeeper-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("creating the admin user: %w", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("rendering the kubeconfig: %w", err)
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return "", fmt.Errorf("writing the kubeconfig: %w", err)
	}
	return path, nil
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

// exitStatus is a command's status as a shell gives it: its exit code, or
// 128 + the signal that killed it.
func exitStatus(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}
