package agent

import (
	"context"
	"sort"
	"sync"
)

// VM is what a driver needs to start a VM.
type VM struct {
	Name      string
	CPU       int64
	MemoryMiB int64
	// Disks are the VDIs to attach, by name, with their mode (RW or RO).
	Disks map[string]string
}

// Driver runs VMs on this host. Implementations: sim (in memory); libvirt and
// XenAPI drivers plug in behind the same interface.
type Driver interface {
	// Start starts vm; starting a running VM is a no-op.
	Start(ctx context.Context, vm VM) error
	// Stop stops the named VM; stopping a halted VM is a no-op.
	Stop(ctx context.Context, name string) error
	// StopAll force-stops every VM (the watchdog's self-fence).
	StopAll(ctx context.Context) error
	// Running lists the running VMs, sorted by name.
	Running(ctx context.Context) ([]string, error)
}

// SimDriver keeps VMs in memory. They live in the agent's process and die
// with it, like the VMs of a host that loses power. It is safe for
// concurrent use.
type SimDriver struct {
	mu      sync.Mutex
	running map[string]VM
}

// NewSimDriver returns a driver with no VM running.
func NewSimDriver() *SimDriver { return &SimDriver{running: map[string]VM{}} }

// Start implements Driver.
func (d *SimDriver) Start(_ context.Context, vm VM) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.running[vm.Name] = vm
	return nil
}

// Stop implements Driver.
func (d *SimDriver) Stop(_ context.Context, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.running, name)
	return nil
}

// StopAll implements Driver.
func (d *SimDriver) StopAll(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.running = map[string]VM{}
	return nil
}

// Running implements Driver.
func (d *SimDriver) Running(context.Context) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	names := make([]string, 0, len(d.running))
	for n := range d.running {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}
