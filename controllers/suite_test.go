package controllers_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

var (
	restConfig *rest.Config
	k8s        client.Client
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctrl.SetLogger(logr.Discard())
	if os.Getenv("POOLKEEPER_TEST_LOGS") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	}
	var stop func()
	var err error
	restConfig, stop, err = testutil.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	restConfig.QPS, restConfig.Burst = 500, 1000
	k8s, err = client.New(restConfig, client.Options{Scheme: testutil.Scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// manager is a poolkeeper manager watching one namespace; Stop stops it as a
// killed process would stop (nothing is flushed).
type manager struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (m *manager) Stop() {
	m.cancel()
	<-m.done
}

func startManager(t *testing.T, ns string, opts controllers.Options) *manager {
	t.Helper()
	return startManagerServing(t, ns, opts, metricsserver.Options{BindAddress: "0"})
}

// startManagerServing starts a manager that serves its metrics as metrics says.
func startManagerServing(t *testing.T, ns string, opts controllers.Options, metrics metricsserver.Options) *manager {
	t.Helper()
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 testutil.Scheme,
		Metrics:                metrics,
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(ns),
		Client:                 client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		// Several managers live in one test binary.
		Controller:              config.Controller{SkipNameValidation: ptr.To(true)},
		GracefulShutdownTimeout: ptr.To(5 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	opts.MaxConcurrentReconciles = 4
	if err := controllers.SetupWithManager(mgr, opts); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &manager{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		if err := mgr.Start(ctx); err != nil {
			// Stopping is a crash for these tests: reconciles cut short by the
			// grace period are what a killed manager leaves, and the tests
			// check that the next manager copes.
			if strings.Contains(err.Error(), "grace period") {
				t.Logf("manager stopped with reconciles in flight: %v", err)
				return
			}
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(m.Stop)
	return m
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "pk-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// poolOpts shapes the pool of a test.
type poolOpts struct {
	ha            bool
	timeout       time.Duration
	maxUnhealthy  *int32
	maxConcurrent int32
	master        string
}

func createPool(t *testing.T, ns, name string, o poolOpts) *vpoolv1alpha1.Pool {
	t.Helper()
	p := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	p.Spec.HA.Enabled = o.ha
	p.Spec.HA.HostFailuresToTolerate = 1
	if o.timeout > 0 {
		p.Spec.HeartbeatTimeout = &metav1.Duration{Duration: o.timeout}
	}
	p.Spec.Fencing.MaxUnhealthyPercent = 50
	if o.maxUnhealthy != nil {
		p.Spec.Fencing.MaxUnhealthyPercent = *o.maxUnhealthy
	}
	p.Spec.Fencing.MaxConcurrent = max(o.maxConcurrent, 1)
	p.Spec.Master = o.master
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func createHost(t *testing.T, ns, pool, name string, mutate ...func(*vpoolv1alpha1.Host)) *vpoolv1alpha1.Host {
	t.Helper()
	h := &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	h.Spec.PoolRef.Name = pool
	h.Spec.Address = name + ".example"
	h.Spec.Capacity.CPU.Set(16)
	h.Spec.Capacity.Memory.Set(64 << 30)
	for _, f := range mutate {
		f(h)
	}
	if err := k8s.Create(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	return h
}

// runningAgent is an in-process host agent with the sim driver.
type runningAgent struct {
	*agent.Agent
	Driver agent.Driver
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Kill crashes the host: no more heartbeats, and its sim VMs, which live in
// the agent's process, are gone with it.
func (a *runningAgent) Kill() {
	a.cancel()
	<-a.done
	_ = a.Driver.StopAll(context.Background())
}

// Err is what Run returned, once it has.
func (a *runningAgent) Err() error {
	select {
	case <-a.done:
		return a.err
	default:
		return nil
	}
}

func startAgent(t *testing.T, ns, host string, interval time.Duration, driver *agent.SimDriver) *runningAgent {
	t.Helper()
	cfg := agent.Config{Namespace: ns, Host: host, Interval: interval}
	if driver != nil {
		cfg.Driver = driver
	}
	return startAgentConfig(t, cfg)
}

func startAgentConfig(t *testing.T, cfg agent.Config) *runningAgent {
	t.Helper()
	if cfg.Driver == nil {
		cfg.Driver = agent.NewSimDriver()
	}
	cfg.RESTConfig = restConfig
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, Driver: cfg.Driver, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ra.done)
		ra.err = a.Run(ctx)
	}()
	t.Cleanup(ra.Kill)
	return ra
}

func getHost(g Gomega, ns, name string) *vpoolv1alpha1.Host {
	h := &vpoolv1alpha1.Host{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, h)).To(Succeed())
	return h
}

func getPool(g Gomega, ns, name string) *vpoolv1alpha1.Pool {
	p := &vpoolv1alpha1.Pool{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, p)).To(Succeed())
	return p
}

func phaseOf(ns, name string) func(g Gomega) vpoolv1alpha1.HostPhase {
	return func(g Gomega) vpoolv1alpha1.HostPhase { return getHost(g, ns, name).Status.Phase }
}

// eventReasons lists the reasons of the events about an object.
// eventsOf polls the reasons of the events about an object: events are
// sent asynchronously and may follow the change they are about.
func eventsOf(ns, name string) func(g Gomega) []string {
	return func(g Gomega) []string { return eventReasons(g, ns, name) }
}

func eventReasons(g Gomega, ns, name string) []string {
	list := &corev1.EventList{}
	g.Expect(k8s.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	var reasons []string
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

func startAgentWithBoot(t *testing.T, ns, host, bootID string) *runningAgent {
	t.Helper()
	return startAgentConfig(t, agent.Config{Namespace: ns, Host: host, Interval: interval, BootID: bootID})
}

func inNS(ns string) client.InNamespace { return client.InNamespace(ns) }

func key(ns, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: ns, Name: name}
}
