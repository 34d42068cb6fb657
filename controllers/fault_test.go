package controllers_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/agent"
)

// TestRandomFaults drives a pool through a seeded, reproducible sequence of
// host crashes, heartbeat pauses, agent restarts and manager restarts, and
// checks invariants 1-4 after every step; at the end every Restart VM runs.
// Reproduce a run with POOLKEEPER_FAULT_SEED=<seed>.
func TestRandomFaults(t *testing.T) {
	seed := int64(20261121)
	if s := os.Getenv("POOLKEEPER_FAULT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)
	g := NewWithT(t)
	ns := newNamespace(t)
	hostNames := []string{"h1", "h2", "h3", "h4", "h5"}
	maxUnhealthy := int32(60)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout, maxUnhealthy: &maxUnhealthy, maxConcurrent: 2})
	createSR(t, ns, "p", "nfs", "")
	for _, h := range hostNames {
		createHost(t, ns, "p", h)
	}
	const vms = 30
	for i := 0; i < vms; i++ {
		name := fmt.Sprintf("vm-%02d", i)
		createVDI(t, ns, "p", name, "nfs")
		createVM(t, ns, "p", name, withDisk(name), func(vm *vpoolv1alpha1.VirtualMachine) {
			vm.Spec.StartOrder = int32(i % 3)
			if i%5 == 4 {
				vm.Spec.HA.RestartPriority = vpoolv1alpha1.RestartBestEffort
			}
		})
	}
	mgr := startManager(t, ns, controllers.Options{})
	drivers := map[string]*agent.SimDriver{}
	agents := map[string]*runningAgent{}
	for _, h := range hostNames {
		drivers[h] = agent.NewSimDriver()
		agents[h] = startAgent(t, ns, h, interval, drivers[h])
	}
	watchInvariants(t, drivers)
	inv := newInvariantChecker(ns, drivers)
	g.Eventually(func(g Gomega) { inv.allRunning(g, vms) }, 60*time.Second, 200*time.Millisecond).Should(Succeed())

	dead := map[string]bool{}
	for step := 0; step < 16; step++ {
		switch op := rng.Intn(4); {
		case op == 0 && len(dead) < 2: // crash a live host
			h := hostNames[rng.Intn(len(hostNames))]
			if !dead[h] {
				t.Logf("step %d: crash %s", step, h)
				agents[h].Kill()
				dead[h] = true
			}
		case op == 1: // bring a crashed host back with a new boot
			for h := range dead {
				t.Logf("step %d: reboot %s", step, h)
				agents[h] = startAgent(t, ns, h, interval, drivers[h])
				delete(dead, h)
				break
			}
		case op == 2: // a short heartbeat pause
			h := hostNames[rng.Intn(len(hostNames))]
			if !dead[h] {
				t.Logf("step %d: pause %s", step, h)
				agents[h].Freeze(timeout / 2)
			}
		default: // restart the manager
			t.Logf("step %d: restart the manager", step)
			mgr.Stop()
			mgr = startManager(t, ns, controllers.Options{})
		}
		deadline := time.Now().Add(time.Duration(1000+rng.Intn(2500)) * time.Millisecond)
		for time.Now().Before(deadline) {
			inv.check(t)
			time.Sleep(100 * time.Millisecond)
		}
	}
	for h := range dead {
		agents[h] = startAgent(t, ns, h, interval, drivers[h])
	}
	g.Eventually(func(g Gomega) { inv.check(t); inv.allRunning(g, vms) }, 90*time.Second, 200*time.Millisecond).Should(Succeed())
}

// invariantChecker checks invariants 2-4 from the API and the sim drivers.
type invariantChecker struct {
	ns       string
	drivers  map[string]*agent.SimDriver
	masters  map[int64]string
	resident map[string]string
}

func newInvariantChecker(ns string, drivers map[string]*agent.SimDriver) *invariantChecker {
	return &invariantChecker{ns: ns, drivers: drivers, masters: map[int64]string{}, resident: map[string]string{}}
}

func (c *invariantChecker) check(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	hosts := &vpoolv1alpha1.HostList{}
	vmList := &vpoolv1alpha1.VirtualMachineList{}
	vdis := &vpoolv1alpha1.VirtualDiskList{}
	pool := &vpoolv1alpha1.Pool{}
	// What runs is read before the locks: a VM running then must hold its
	// locks now, unless it stopped in between (checked again below).
	runningBefore := map[string][]string{}
	for host, d := range c.drivers {
		runningBefore[host], _ = d.Running(ctx)
	}
	if k8s.List(ctx, hosts, inNS(c.ns)) != nil || k8s.List(ctx, vmList, inNS(c.ns)) != nil ||
		k8s.List(ctx, vdis, inNS(c.ns)) != nil || k8s.Get(ctx, key(c.ns, "p"), pool) != nil {
		return
	}
	// Invariant 4: one master per epoch.
	if m, ok := c.masters[pool.Status.Epoch]; ok && m != pool.Status.Master && pool.Status.Master != "" {
		t.Errorf("invariant 4 broken: epoch %d had master %s and now %s", pool.Status.Epoch, m, pool.Status.Master)
	}
	if pool.Status.Master != "" {
		c.masters[pool.Status.Epoch] = pool.Status.Master
	}
	// Invariant 2: a running VM holds the RW locks of its disks for its host.
	locks := map[string]string{}
	for _, d := range vdis.Items {
		if d.Status.Lock != nil {
			locks[d.Name] = d.Status.Lock.Host
		}
	}
	byName := map[string]*vpoolv1alpha1.VirtualMachine{}
	for i := range vmList.Items {
		byName[vmList.Items[i].Name] = &vmList.Items[i]
	}
	for host, d := range c.drivers {
		for _, name := range runningBefore[host] {
			vm := byName[name]
			if vm == nil {
				continue
			}
			for _, disk := range vm.Spec.Disks {
				// The lock read after the driver: a lock never leaves a running VM.
				if holder := locks[disk.VirtualDisk]; holder != host {
					if still, _ := d.Running(ctx); contains(still, name) {
						t.Errorf("invariant 2 broken: VM %s runs on %s but VDI %s is locked by %q", name, host, disk.VirtualDisk, holder)
					}
				}
			}
		}
	}
	// Invariant 3: a VM resident on an Unreachable (not yet fenced) host stays there.
	phase := map[string]vpoolv1alpha1.HostPhase{}
	for _, h := range hosts.Items {
		phase[h.Name] = h.Status.Phase
	}
	for name, prev := range c.resident {
		p := phase[prev]
		if vm := byName[name]; vm != nil && (p == vpoolv1alpha1.HostPhaseUnreachable || p == vpoolv1alpha1.HostPhaseFencing) &&
			vm.Status.ResidentOn != prev {
			t.Errorf("invariant 3 broken: VM %s left host %s while the host is %s", name, prev, p)
		}
	}
	c.resident = map[string]string{}
	for name, vm := range byName {
		if vm.Status.ResidentOn != "" {
			c.resident[name] = vm.Status.ResidentOn
		}
	}
}

func (c *invariantChecker) allRunning(g Gomega, n int) {
	vmList := &vpoolv1alpha1.VirtualMachineList{}
	g.Expect(k8s.List(context.Background(), vmList, inNS(c.ns))).To(Succeed())
	running := 0
	for _, vm := range vmList.Items {
		if vm.Status.PowerState == vpoolv1alpha1.PowerRunning {
			running++
		}
	}
	if running != n {
		var waiting []string
		for _, vm := range vmList.Items {
			if vm.Status.PowerState != vpoolv1alpha1.PowerRunning {
				desc := vm.Name + " on " + vm.Status.ResidentOn
				for _, c := range vm.Status.Conditions {
					desc += fmt.Sprintf(" [%s=%s %s: %s]", c.Type, c.Status, c.Reason, c.Message)
				}
				waiting = append(waiting, desc)
			}
		}
		g.Expect(running).To(Equal(n), "every VM fits, so every VM runs; not running:\n%s", strings.Join(waiting, "\n"))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
