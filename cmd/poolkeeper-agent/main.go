// Command poolkeeper-agent is the host agent of a poolkeeper pool. It runs on
// a hypervisor host, renews the host's heartbeat Lease, reports what the host
// runs, and self-fences (stops every VM, exits with status 3) when it cannot
// renew the Lease before its watchdog deadline.
//
//	poolkeeper-agent --kubeconfig K --namespace NS --host NAME --driver sim
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/poolkeeper/poolkeeper/internal/agent"
)

// exitSelfFenced is the exit status after a watchdog self-fence; a supervisor
// restarting the agent gives it a new boot ID, as a host reboot would.
const exitSelfFenced = 3

func main() {
	var (
		namespace, host, driver, bootID string
		interval                        = agent.DefaultHeartbeatInterval
	)
	// --kubeconfig is registered by controller-runtime's config loader:
	// the flag, else $KUBECONFIG, else the in-cluster configuration.
	flag.StringVar(&namespace, "namespace", "", "Namespace of the pool and of this host's Host object (required).")
	flag.StringVar(&host, "host", "", "Name of this host's Host object (required).")
	flag.StringVar(&driver, "driver", "sim", "VM driver: sim (VMs kept in memory).")
	flag.StringVar(&bootID, "boot-id", "", "Boot ID to report. Default: a new random one on every start.")
	flag.DurationVar(&interval, "heartbeat-interval", interval,
		"Time between two heartbeat Lease renewals; at most a quarter of the pool's heartbeat timeout.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	log := zap.New(zap.UseFlagOptions(&opts))
	ctrl.SetLogger(log)

	if namespace == "" || host == "" {
		fmt.Fprintln(os.Stderr, "poolkeeper-agent: --namespace and --host are required")
		flag.Usage()
		os.Exit(2)
	}
	var d agent.Driver
	switch driver {
	case "sim":
		d = agent.NewSimDriver()
	default:
		fmt.Fprintf(os.Stderr, "poolkeeper-agent: unknown --driver %q (available: sim)\n", driver)
		os.Exit(2)
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "poolkeeper-agent: loading kubeconfig: %v\n", err)
		os.Exit(1)
	}
	a, err := agent.New(agent.Config{RESTConfig: cfg, Namespace: namespace, Host: host, Interval: interval,
		Driver: d, BootID: bootID, Log: log})
	if err != nil {
		fmt.Fprintf(os.Stderr, "poolkeeper-agent: %v\n", err)
		os.Exit(2)
	}
	if err := a.Run(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintf(os.Stderr, "poolkeeper-agent: %v\n", err)
		if errors.Is(err, agent.ErrSelfFenced) {
			os.Exit(exitSelfFenced)
		}
		os.Exit(1)
	}
}
