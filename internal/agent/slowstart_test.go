package agent_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/poolkeeper/poolkeeper/internal/agent"
)

// slowDriver starts each VM in a while, one at a time, as a real
// hypervisor may.
type slowDriver struct {
	*agent.SimDriver
	delay time.Duration
	one   sync.Mutex
}

func (d *slowDriver) Start(ctx context.Context, vm agent.VM) error {
	d.one.Lock()
	defer d.one.Unlock()
	time.Sleep(d.delay)
	return d.SimDriver.Start(ctx, vm)
}

// Starting many VMs never starves the heartbeat: starts that together take
// longer than the heartbeat timeout run beside the heartbeat, and the agent
// neither misses its deadline nor self-fences.
func TestManySlowStartsKeepTheHeartbeat(t *testing.T) {
	g := NewWithT(t)
	ns := setup(t, 2*time.Second)
	const vms = 10
	for i := range vms {
		placeVM(t, ns, fmt.Sprintf("vm-%d", i))
	}
	driver := &slowDriver{SimDriver: agent.NewSimDriver(), delay: 300 * time.Millisecond}
	stop := runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
		Driver: driver, BootID: "boot-1"})
	g.Eventually(func() ([]string, error) { return driver.Running(context.Background()) }, 30*time.Second, 50*time.Millisecond).
		Should(HaveLen(vms), "every VM starts, %d x %s in all, longer than the 2s timeout", vms, driver.delay)
	g.Expect(stop()).To(Succeed(), "the agent kept its heartbeat: it did not self-fence")
}
