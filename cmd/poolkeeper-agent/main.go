// Command poolkeeper-agent is the host agent of a poolkeeper pool. It runs on
// a hypervisor host, renews the host's heartbeat Lease, reports what the host
// runs, and self-fences (stops every VM, exits with status 3) when it cannot
// renew the Lease before its watchdog deadline.
//
//	poolkeeper-agent --kubeconfig K --namespace NS --host NAME --driver sim|libvirt
//	poolkeeper-agent --bootstrap-kubeconfig B --cert-dir DIR --namespace NS --host NAME --driver sim|libvirt
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/agent/libvirt"
	"github.com/poolkeeper/poolkeeper/internal/version"
	"github.com/poolkeeper/poolkeeper/internal/watchdog"
)

// Exit statuses.
const (
	exitOK = 0
	// exitError: the agent could not start or run (API server unreachable,
	// Host missing, credentials refused).
	exitError = 1
	// exitUsage: a wrong flag.
	exitUsage = 2
	// exitSelfFenced is the exit status after a watchdog self-fence; a
	// supervisor restarting the agent gives it a new boot ID, as a host
	// reboot would.
	exitSelfFenced = 3
)

const usageHeader = `poolkeeper-agent is the host agent of a poolkeeper pool. On a hypervisor host
it renews the Host's heartbeat Lease, reports the host's boot ID, networks and
VMs, runs the VMs the operator places on it, and self-fences (stops every VM
and exits with status 3) when it cannot renew the Lease before its watchdog
deadline.

Usage:
  poolkeeper-agent --kubeconfig K --namespace NS --host NAME [--driver sim|libvirt]
  poolkeeper-agent --bootstrap-kubeconfig B --cert-dir DIR --namespace NS --host NAME [--driver sim|libvirt]

Credentials: --kubeconfig (or $KUBECONFIG, or the in-cluster configuration)
is used as is. With --bootstrap-kubeconfig the agent instead authenticates
with a client certificate for poolkeeper:agent:<namespace>:<host>, kept in
--cert-dir and renewed before it expires (the recommended setup on hypervisor
hosts; see the README, "Running the agent on a hypervisor host").

Exit status:
  0  stopped by SIGINT or SIGTERM (VMs keep running)
  1  could not start or run (API server unreachable, Host missing, credentials refused)
  2  wrong flags (also --watchdog none, or a watchdog too coarse for the pool's heartbeat
     timeout, for a host fenced by its agent with a real driver)
  3  self-fenced: the Lease could not be renewed before the watchdog deadline and
     every VM was stopped; restart it (a new boot) to rejoin the pool

Flags:
`

func main() { os.Exit(run()) }

func run() int {
	var (
		namespace, host, driver, bootID string
		bootstrapKubeconfig, certDir    string
		simNetworks, libvirtURI         string
		simStorageDir                   string
		watchdogSpec                    string
		showVersion                     bool
		metricsAddr                     string
		interval                        = agent.DefaultHeartbeatInterval
	)
	// --kubeconfig is registered by controller-runtime's config loader:
	// the flag, else $KUBECONFIG, else the in-cluster configuration.
	if f := flag.Lookup("kubeconfig"); f != nil {
		f.Usage = "Path to the kubeconfig the agent uses as is. Default: $KUBECONFIG, else the in-cluster configuration. " +
			"Not with --bootstrap-kubeconfig."
	}
	flag.StringVar(&namespace, "namespace", "", "Namespace of the pool and of this host's Host object (required).")
	flag.StringVar(&host, "host", "", "Name of this host's Host object (required).")
	flag.StringVar(&driver, "driver", "sim",
		"VM driver: sim (VMs kept in memory) or libvirt (VMs as libvirt domains, KVM or QEMU, that outlive the agent).")
	flag.StringVar(&libvirtURI, "libvirt-uri", libvirt.DefaultURI,
		"With --driver libvirt: the libvirt daemon's URI, e.g. qemu:///system or qemu+unix:///system?socket=PATH.")
	flag.StringVar(&simNetworks, "sim-networks", "default",
		"With --driver sim: the networks the simulated host offers, comma-separated (reported in the Host's status.networks).")
	flag.StringVar(&simStorageDir, "sim-storage-dir", "",
		"With --driver sim: the directory that stands for the shared storage of the pool's shared SRs; the heartbeat SR's "+
			"statefile is DIR/<SR>/statefile. Give the agents of one simulated pool the same directory.")
	flag.StringVar(&bootID, "boot-id", "", "Boot ID to report. Default: the emulated host's with --watchdog unix:PATH; "+
		"else with --driver libvirt the kernel's (/proc/sys/kernel/random/boot_id, so that a restarted agent is the same "+
		"boot and adopts its VMs); with --driver sim a new random one on every start.")
	flag.StringVar(&watchdogSpec, "watchdog", "", "The watchdog that resets this host when the agent stops petting it "+
		"(petted only after successful heartbeat renewals): a device path, unix:PATH (the emulator of hack/libvirt-host.sh) "+
		"or none. Default: "+watchdog.DefaultDevice+" with a real driver, none with --driver sim. none with a real driver "+
		"is refused for a host fenced by its agent (spec.fencing.method Agent).")
	flag.DurationVar(&interval, "heartbeat-interval", interval,
		"Time between two heartbeat Lease renewals; at most a quarter of the pool's heartbeat timeout.")
	flag.StringVar(&bootstrapKubeconfig, "bootstrap-kubeconfig", "",
		"Path to a kubeconfig with a bootstrap credential (a bootstrap token or a ServiceAccount token) allowed only to "+
			"send CertificateSigningRequests. With it the agent authenticates with a client certificate, requested with "+
			"that credential, kept in --cert-dir and renewed with itself before it expires; the kubeconfig's server and CA are used.")
	flag.StringVar(&certDir, "cert-dir", "/var/lib/poolkeeper-agent/pki",
		"Directory of the agent's private key and client certificates ("+agent.CertificatePairPrefix+"-current.pem), "+
			"with --bootstrap-kubeconfig.")
	flag.StringVar(&metricsAddr, "metrics-bind-address", "", "Serve the agent's metrics (outage exemptions, Go runtime) "+
		"over plain HTTP at this address's /metrics, e.g. 127.0.0.1:9101 for a local scraper. Default: not served.")
	flag.BoolVar(&showVersion, "version", false, "Print the version and exit.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), usageHeader)
		flag.PrintDefaults()
	}
	flag.Parse()
	if showVersion {
		fmt.Println("poolkeeper-agent", version.String())
		return exitOK
	}
	log := zap.New(zap.UseFlagOptions(&opts))
	ctrl.SetLogger(log)
	klog.SetLogger(log) // client-go's certificate manager logs through klog

	if namespace == "" || host == "" {
		return usageError("--namespace and --host are required")
	}
	if bootstrapKubeconfig != "" && flag.Lookup("kubeconfig").Value.String() != "" {
		return usageError("--kubeconfig and --bootstrap-kubeconfig exclude each other")
	}
	if watchdogSpec == "" {
		watchdogSpec = watchdog.DefaultDevice
		if driver == "sim" {
			watchdogSpec = watchdog.KindNone
		}
	}
	wd, err := watchdog.Open(watchdogSpec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "poolkeeper-agent: --watchdog: %v\n", err)
		return exitError
	}
	if bootID == "" {
		// Emulated hosts share this machine's kernel: their boot is the
		// emulated watchdog's.
		bootID = wd.BootID()
	}
	d, bootID, closeDriver, err := openDriver(driver, simNetworks, libvirtURI, namespace, host, bootID, log)
	if errors.Is(err, errUnknownDriver) {
		return usageError(err.Error())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "poolkeeper-agent: %v\n", err)
		return exitError
	}
	defer closeDriver() // stops no VM
	ctx := ctrl.SetupSignalHandler()
	if metricsAddr != "" {
		if err := serveMetrics(ctx, metricsAddr, log); err != nil {
			fmt.Fprintf(os.Stderr, "poolkeeper-agent: --metrics-bind-address: %v\n", err)
			return exitError
		}
	}
	cfg, err := restConfig(ctx, bootstrapKubeconfig, certDir, namespace, host)
	if err != nil {
		fmt.Fprintf(os.Stderr, "poolkeeper-agent: %v\n", err)
		return exitError
	}
	a, err := agent.New(agent.Config{RESTConfig: cfg, Namespace: namespace, Host: host, Interval: interval,
		Driver: d, DriverName: driver, BootID: bootID, Watchdog: wd, RequireWatchdog: driver != "sim", Log: log,
		StatefileDir: statefileDir(d, simStorageDir)})
	if err != nil {
		return usageError(err.Error())
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "poolkeeper-agent: %v\n", err)
		if errors.Is(err, agent.ErrSelfFenced) {
			return exitSelfFenced
		}
		if errors.Is(err, agent.ErrNoSafeWatchdog) {
			return exitUsage
		}
		return exitError
	}
	return exitOK
}

// restConfig is the kubeconfig as is, or, with a bootstrap kubeconfig, the
// self-renewing client certificate (waiting for the first one).
func restConfig(ctx context.Context, bootstrapKubeconfig, certDir, namespace, host string) (*rest.Config, error) {
	if bootstrapKubeconfig == "" {
		cfg, err := ctrl.GetConfig()
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig: %w", err)
		}
		return cfg, nil
	}
	bootstrap, err := clientcmd.BuildConfigFromFlags("", bootstrapKubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading --bootstrap-kubeconfig: %w", err)
	}
	certs, err := agent.StartCertificates(ctx, agent.CertificateOptions{Bootstrap: bootstrap, Dir: certDir,
		Namespace: namespace, Host: host, Log: ctrl.Log})
	if err != nil {
		return nil, err
	}
	return certs.RESTConfig(), nil
}

func usageError(msg string) int {
	fmt.Fprintf(os.Stderr, "poolkeeper-agent: %s\n", msg)
	flag.Usage()
	return exitUsage
}

var errUnknownDriver = errors.New("unknown --driver (available: sim, libvirt)")

// openDriver is the --driver's VM driver, the boot ID the agent runs under
// (bootID, else the kernel's with a real driver) and what releases the
// driver.
func openDriver(name, simNetworks, libvirtURI, namespace, host, bootID string,
	log logr.Logger) (agent.Driver, string, func(), error) {
	switch name {
	case "sim":
		sim := agent.NewSimDriver()
		if simNetworks != "" {
			sim.SetNetworks(strings.Split(simNetworks, ",")...)
		}
		return sim, bootID, func() {}, nil
	case "libvirt":
		if bootID == "" {
			id, err := kernelBootID()
			if err != nil {
				return nil, "", nil, err
			}
			bootID = id
		}
		lv, err := libvirt.New(context.Background(), libvirt.Options{URI: libvirtURI, Namespace: namespace, Host: host,
			BootID: bootID, Log: log.WithName("libvirt")})
		if err != nil {
			return nil, "", nil, err
		}
		return lv, bootID, func() { _ = lv.Close() }, nil
	}
	return nil, "", nil, fmt.Errorf("%q: %w", name, errUnknownDriver)
}

// kernelBootID is the kernel's boot ID: the same for every run of the agent
// until the host reboots, so that a restarted agent is not a new boot.
func kernelBootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("reading the kernel's boot ID (or give --boot-id): %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// statefileDir resolves a heartbeat SR to its statefile directory: with the
// sim driver under --sim-storage-dir; with libvirt in the target of the SR's
// storage pool (spec.libvirt.storagePool), which the agent reads where the
// daemon does (they run on the same host).
func statefileDir(d agent.Driver, simStorageDir string) func(context.Context, *vpoolv1alpha1.StorageRepository) (string, error) {
	switch d := d.(type) {
	case *libvirt.Driver:
		return func(ctx context.Context, sr *vpoolv1alpha1.StorageRepository) (string, error) {
			if sr.Spec.Libvirt == nil || sr.Spec.Libvirt.StoragePool == "" {
				return "", fmt.Errorf("StorageRepository %s has no spec.libvirt.storagePool: with the libvirt driver "+
					"the heartbeat SR's statefile lives in that storage pool", sr.Name)
			}
			return d.StatefileDir(ctx, sr.Spec.Libvirt.StoragePool, sr.Namespace, sr.Spec.PoolRef.Name)
		}
	case *agent.SimDriver:
		if simStorageDir != "" {
			return agent.SimStatefileDir(simStorageDir)
		}
	}
	return nil
}

// serveMetrics serves agent.Metrics and the Go runtime's and process's
// metrics at addr's /metrics until ctx ends. It fails at once when addr
// cannot be listened on.
func serveMetrics(ctx context.Context, addr string, log logr.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{agent.Metrics, reg}, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "Serving metrics stopped", "address", addr)
		}
	}()
	log.Info("Serving metrics", "address", l.Addr().String())
	return nil
}
