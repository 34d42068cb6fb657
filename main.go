/*
Copyright The poolkeeper Authors.

Licensed under the Apache License, Version 2.0.
*/

// Command poolkeeper is the poolkeeper manager: the controllers that run
// XenServer-style virtualization pools as custom resources.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
	"github.com/poolkeeper/poolkeeper/internal/version"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(vpoolv1alpha1.AddToScheme(scheme))
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "poolkeeper: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(flag.CommandLine.Output(), `poolkeeper is the manager of the poolkeeper operator: the controllers that run
XenServer-style virtualization pools (group vpool.poolkeeper.io) as custom
resources and recover them from host failures: heartbeat staleness, fencing,
host-forget, VM restarts and disk lock release, master election, pool backup
and restore. It talks to the cluster of --kubeconfig, $KUBECONFIG or its
in-cluster ServiceAccount.

Usage: poolkeeper [flags]

`)
	flag.PrintDefaults()
}

func run() error {
	var (
		metricsAddr          string
		metricsCertPath      string
		metricsCertName      string
		metricsCertKey       string
		probeAddr            string
		secureMetrics        bool
		enableHTTP2          bool
		leaderElect          bool
		leaderElectionNS     string
		watchNamespace       string
		gracefulShutdown     time.Duration
		maxConcurrentReconcs int
	)
	// Leader election is on by default when running in a cluster (several
	// replicas), off when run from a workstation against a dev cluster.
	inCluster := os.Getenv("KUBERNETES_SERVICE_HOST") != ""

	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443",
		"Address the metrics endpoint binds to (HTTPS when --metrics-secure). Use \"0\" to disable it.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true,
		"Serve metrics over HTTPS, authenticated and authorized through the API server (TokenReview and SubjectAccessReview).")
	flag.StringVar(&metricsCertPath, "metrics-cert-path", "",
		"Directory holding the metrics server's certificate and key (e.g. a cert-manager Secret's mount); "+
			"reloaded when they change. Default: a self-signed certificate made at start.")
	flag.StringVar(&metricsCertName, "metrics-cert-name", "tls.crt", "File name of the metrics server certificate in --metrics-cert-path.")
	flag.StringVar(&metricsCertKey, "metrics-cert-key", "tls.key", "File name of the metrics server key in --metrics-cert-path.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.BoolVar(&enableHTTP2, "enable-http2", false,
		"Allow HTTP/2 on the metrics server (off by default against HTTP/2 rapid-reset attacks).")
	flag.BoolVar(&leaderElect, "leader-elect", inCluster,
		"Elect a leader so only one replica reconciles. Default: true in a cluster, false outside.")
	flag.StringVar(&leaderElectionNS, "leader-election-namespace", "",
		"Namespace of the leader-election Lease. Default: the Pod's namespace in a cluster.")
	flag.StringVar(&watchNamespace, "namespace", "",
		"Watch only these namespaces, a comma-separated list (a, or a,b). Default: all namespaces.")
	flag.DurationVar(&gracefulShutdown, "graceful-shutdown-timeout", 30*time.Second,
		"How long running reconciles may take to finish on shutdown.")
	flag.IntVar(&maxConcurrentReconcs, "max-concurrent-reconciles", 4, "Parallel reconciles per controller.")
	showVersion := flag.Bool("version", false, "Print the version and exit.")
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Usage = usage
	flag.Parse()
	if *showVersion {
		fmt.Println("poolkeeper", version.String())
		return nil
	}

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{
		BindAddress:   metricsAddr,
		SecureServing: secureMetrics,
		TLSOpts:       tlsOpts,
	}
	if secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	var metricsCerts *certwatcher.CertWatcher
	if metricsCertPath != "" {
		var err error
		metricsCerts, err = certwatcher.New(filepath.Join(metricsCertPath, metricsCertName), filepath.Join(metricsCertPath, metricsCertKey))
		if err != nil {
			return fmt.Errorf("loading the metrics certificate from --metrics-cert-path %s: %w", metricsCertPath, err)
		}
		metricsOpts.TLSOpts = append(metricsOpts.TLSOpts, func(c *tls.Config) { c.GetCertificate = metricsCerts.GetCertificate })
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "poolkeeper.vpool.poolkeeper.io",
		LeaderElectionNamespace:       leaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &gracefulShutdown,
		Cache:                         controllers.CacheOptions(watchNamespace),
		// Secrets are read by name from the API server, never cached: an
		// informer would need list and watch on every Secret it may see.
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	if err := controllers.SetupWithManager(mgr, controllers.Options{
		Clock:                   clock.RealClock{},
		MaxConcurrentReconciles: maxConcurrentReconcs,
	}); err != nil {
		return err
	}

	if metricsCerts != nil {
		if err := mgr.Add(metricsCerts); err != nil {
			return fmt.Errorf("watching the metrics certificate: %w", err)
		}
	}
	// Pool gauges, computed at scrape time from the manager's cache.
	crmetrics.Registry.MustRegister(&metrics.PoolCollector{Reader: mgr.GetCache(), Clock: clock.RealClock{},
		OnError: func(err error) { ctrl.Log.WithName("metrics").Error(err, "Listing pool objects for the pool gauges") }})

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}

	log.Info("Starting manager", "version", version.String(), "leaderElection", leaderElect, "namespace", watchNamespace)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}
