package agent

import (
	"context"
	"slices"
	"sort"
	"sync"
)

// VM is what a driver needs to start a VM.
type VM struct {
	// Name is the VirtualMachine's name; Namespace, Pool and UUID identify it
	// across hosts (a libvirt domain is named <namespace>_<name> and tagged
	// with them).
	Name, Namespace, Pool, UUID string
	CPU                         int64
	MemoryMiB                   int64
	// Disks are the VM's disks in spec order: the first is the boot disk
	// when Boot is nil.
	Disks []Disk
	// Interfaces are the VM's network interfaces, each with its MAC address.
	Interfaces []Interface
	// Boot, when set, boots the VM from a kernel on the host.
	Boot *Boot
}

// Disk is one disk of a VM.
type Disk struct {
	// Name is the disk's name within the VM; VirtualDisk the VDI's name.
	Name, VirtualDisk string
	// Mode is RW or RO: an RO disk is attached read-only.
	Mode string
	// StoragePool is the libvirt storage pool of the VDI's SR (its
	// spec.libvirt.storagePool), empty for a driver without storage.
	StoragePool string
	// Volume is the VDI's status.volume: the volume the driver created for
	// it (EnsureVolume).
	Volume string
}

// Interface is one network interface of a VM.
type Interface struct {
	Name, Network, MACAddress string
}

// Boot is a direct kernel boot.
type Boot struct {
	Kernel, Initrd, Cmdline string
}

// Driver runs VMs on this host. Implementations: sim (in memory) and
// libvirt; a XenAPI driver would plug in behind the same interface. A
// driver may also implement the optional interfaces below. It must be safe
// for concurrent use: the agent's worker starts and stops several VMs at
// once, each on a goroutine of its own, while the heartbeat loop may call
// StopAll (a self-fence) with a start still in flight.
type Driver interface {
	// Start starts vm; starting a running VM is a no-op.
	Start(ctx context.Context, vm VM) error
	// Stop stops the named VM (gracefully, then forcibly); stopping a halted
	// VM is a no-op.
	Stop(ctx context.Context, name string) error
	// StopAll force-stops every VM (the self-fence).
	StopAll(ctx context.Context) error
	// Running lists the VMs that are resident (running or paused), sorted
	// by name.
	Running(ctx context.Context) ([]string, error)
}

// PowerStater reports VMs that are resident but not running: Paused,
// Suspended (by the hypervisor) or crashed. A VM absent from the map and
// listed by Running is Running.
type PowerStater interface {
	PowerStates(ctx context.Context) (map[string]string, error)
}

// Notifier is a driver that says when a VM changed state on its own (a
// lifecycle event: shut down from inside, crashed, paused), so the agent
// reports it without polling.
type Notifier interface {
	// Changes returns a channel that receives a value after every change.
	Changes() <-chan struct{}
}

// StoragePlugger plugs SRs (XenServer's pbd-plug) and creates VDI volumes.
type StoragePlugger interface {
	// Plug makes the storage pool usable on this host (defined, active,
	// refreshed); an error says why it cannot be.
	Plug(ctx context.Context, storagePool string) error
	// EnsureVolume returns the key of the volume named name in storagePool,
	// creating it with sizeBytes when it does not exist.
	EnsureVolume(ctx context.Context, storagePool, name string, sizeBytes int64) (string, error)
}

// NetworkLister lists the networks this host offers, by name, sorted.
type NetworkLister interface {
	Networks(ctx context.Context) ([]string, error)
}

// Closer is a driver holding a connection to release when the agent stops.
// Closing stops no VM.
type Closer interface {
	Close() error
}

// SimDriver keeps VMs in memory. They live in the agent's process and die
// with it, like the VMs of a host that loses power. It is safe for
// concurrent use.
type SimDriver struct {
	mu       sync.Mutex
	running  map[string]VM
	networks []string
}

// SetNetworks sets the networks the simulated host offers.
func (d *SimDriver) SetNetworks(names ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.networks = slices.Sorted(slices.Values(names))
}

// Networks implements NetworkLister.
func (d *SimDriver) Networks(context.Context) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.networks), nil
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
