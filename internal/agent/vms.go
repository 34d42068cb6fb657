package agent

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// syncVMs makes the driver run exactly the VMs the operator placed here and
// whose RW disks are locked for this host, and reports their power state.
// It never runs a VM that is not resident on this host: a VM found running
// here but placed elsewhere (or gone) is stopped.
func (a *Agent) syncVMs(ctx context.Context, log logr.Logger) error {
	host := &vpoolv1alpha1.Host{}
	if err := a.client.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: a.cfg.Host}, host); err != nil {
		return err
	}
	vms := &vpoolv1alpha1.VirtualMachineList{}
	if err := a.client.List(ctx, vms, client.InNamespace(a.cfg.Namespace)); err != nil {
		return err
	}
	running, err := a.cfg.Driver.Running(ctx)
	if err != nil {
		return fmt.Errorf("listing VMs: %w", err)
	}
	isRunning := map[string]bool{}
	for _, n := range running {
		isRunning[n] = true
	}
	mine := map[string]*vpoolv1alpha1.VirtualMachine{}
	for i := range vms.Items {
		vm := &vms.Items[i]
		if vm.Spec.PoolRef.Name == host.Spec.PoolRef.Name && vm.Status.ResidentOn == a.cfg.Host {
			mine[vm.Name] = vm
		}
	}
	if err := a.stopUnwanted(ctx, log, running, mine, isRunning); err != nil {
		return err
	}
	return a.startAndReport(ctx, log, host.Status.Phase == vpoolv1alpha1.HostPhaseLive, host, mine, isRunning)
}

// stopUnwanted stops every running VM that is not resident here or should be halted.
func (a *Agent) stopUnwanted(ctx context.Context, log logr.Logger, running []string,
	mine map[string]*vpoolv1alpha1.VirtualMachine, isRunning map[string]bool) error {
	for _, name := range running {
		vm := mine[name]
		if vm != nil && vm.Spec.PowerState == vpoolv1alpha1.DesiredRunning && a.placedOnThisBoot(vm) {
			continue
		}
		if err := a.cfg.Driver.Stop(ctx, name); err != nil {
			return fmt.Errorf("stopping VM %s: %w", name, err)
		}
		log.Info("Stopped VM", "vm", name)
		delete(isRunning, name)
	}
	return nil
}

// startAndReport starts the VMs placed here whose disks are locked for this
// host (only while the host is Live) and reports every resident VM's power state.
func (a *Agent) startAndReport(ctx context.Context, log logr.Logger, live bool, host *vpoolv1alpha1.Host,
	mine map[string]*vpoolv1alpha1.VirtualMachine, isRunning map[string]bool) error {
	// SRs are plugged whatever the phase: a host is ready to run VMs the
	// moment it is Live.
	plugged, firstErr := a.plugStorage(ctx, log, host)
	states := map[string]string{}
	if ps, ok := a.cfg.Driver.(PowerStater); ok {
		var err error
		if states, err = ps.PowerStates(ctx); err != nil {
			return fmt.Errorf("reading power states: %w", err)
		}
	}
	for name, vm := range mine {
		want := vm.Spec.PowerState == vpoolv1alpha1.DesiredRunning && live &&
			meta.IsStatusConditionTrue(vm.Status.Conditions, vpoolv1alpha1.VMDisksLocked)
		if want && !isRunning[name] {
			started, err := a.start(ctx, log, vm, plugged)
			if err != nil {
				firstErr = fmt.Errorf("starting VM %s: %w", name, err)
				continue
			}
			isRunning[name] = started
		}
		state := vpoolv1alpha1.PowerHalted
		if isRunning[name] {
			state = vpoolv1alpha1.PowerRunning
			if s := vpoolv1alpha1.PowerState(states[name]); s != "" {
				state = s
			}
		}
		if vm.Status.PowerState == state {
			continue
		}
		patch := client.MergeFromWithOptions(vm.DeepCopy(), client.MergeFromWithOptimisticLock{})
		vm.Status.PowerState = state
		if err := a.client.Status().Patch(ctx, vm, patch); err != nil && firstErr == nil {
			// A conflict means the operator moved it meanwhile: the next sync
			// sees where it belongs and stops it if it is no longer ours.
			firstErr = fmt.Errorf("reporting VM %s %s: %w", name, state, err)
		}
	}
	return firstErr
}

// start starts vm once everything it needs is here: its RW disks locked
// for this host and boot, its SRs plugged, its volumes created and a MAC
// for every interface. It reports whether the VM runs; why it does not is
// logged once per reason.
func (a *Agent) start(ctx context.Context, log logr.Logger, vm *vpoolv1alpha1.VirtualMachine,
	plugged map[string]attachment) (bool, error) {
	dvm := toDriverVM(vm)
	notReady := ""
	if !a.placedOnThisBoot(vm) {
		notReady = fmt.Sprintf("placed on boot %s of this host, not this boot %s: the operator places it again", vm.Status.ResidentBootID, a.cfg.BootID)
	}
	dvm.Disks = dvm.Disks[:0]
	for _, d := range vm.Spec.Disks {
		if notReady != "" {
			break
		}
		disk, why, err := a.diskFor(ctx, vm, d, plugged)
		if err != nil {
			return false, err
		}
		if why != "" {
			notReady = why
			break
		}
		dvm.Disks = append(dvm.Disks, disk)
	}
	if notReady == "" {
		dvm.Interfaces, notReady = interfacesOf(vm)
	}
	if notReady != "" {
		if a.waiting == nil {
			a.waiting = map[string]string{}
		}
		if a.waiting[vm.Name] != notReady {
			log.Info("Not starting VM", "vm", vm.Name, "why", notReady)
			a.waiting[vm.Name] = notReady
		}
		return false, nil
	}
	delete(a.waiting, vm.Name)
	if !a.beatDue.IsZero() && !a.cfg.Clock.Now().Before(a.beatDue) {
		a.poke() // the heartbeat first; the next sync goes on starting
		return false, nil
	}
	if err := a.cfg.Driver.Start(ctx, dvm); err != nil {
		return false, err
	}
	log.Info("Started VM", "vm", vm.Name)
	return true, nil
}

// placedOnThisBoot says whether vm was placed on this boot of the host (or
// before boot IDs were recorded). A VM placed on an earlier boot ended with
// it: the operator resets it (HostRebooted) and places it again.
func (a *Agent) placedOnThisBoot(vm *vpoolv1alpha1.VirtualMachine) bool {
	return vm.Status.ResidentBootID == "" || vm.Status.ResidentBootID == a.cfg.BootID
}

// interfacesOf gives the VM's interfaces with their MAC addresses: spec's,
// else the one the operator generated in status.
func interfacesOf(vm *vpoolv1alpha1.VirtualMachine) ([]Interface, string) {
	var out []Interface
	for _, nic := range vm.Spec.Interfaces {
		mac := nic.MACAddress
		if mac == "" {
			for _, st := range vm.Status.Interfaces {
				if st.Name == nic.Name {
					mac = st.MACAddress
				}
			}
		}
		if mac == "" {
			return nil, fmt.Sprintf("interface %s has no MAC address yet (the operator assigns one)", nic.Name)
		}
		out = append(out, Interface{Name: nic.Name, Network: nic.Network, MACAddress: mac})
	}
	return out, ""
}

func toDriverVM(vm *vpoolv1alpha1.VirtualMachine) VM {
	out := VM{Name: vm.Name, Namespace: vm.Namespace, Pool: vm.Spec.PoolRef.Name, UUID: vm.Status.UUID}
	if vm.Spec.Resources.CPU != nil {
		out.CPU = vm.Spec.Resources.CPU.Value()
	}
	if vm.Spec.Resources.Memory != nil {
		out.MemoryMiB = vm.Spec.Resources.Memory.Value() >> 20
	}
	for _, d := range vm.Spec.Disks {
		out.Disks = append(out.Disks, Disk{Name: d.Name, VirtualDisk: d.VirtualDisk, Mode: string(d.Mode)})
	}
	if b := vm.Spec.Boot; b != nil {
		out.Boot = &Boot{Kernel: b.Kernel, Initrd: b.Initrd, Cmdline: b.Cmdline}
	}
	return out
}
