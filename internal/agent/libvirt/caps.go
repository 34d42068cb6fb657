package libvirt

import (
	"fmt"
	"slices"

	"libvirt.org/go/libvirtxml"
)

// guest is what a host's capabilities say a domain should be: its type
// (kvm, else qemu, else what the hypervisor offers, e.g. test), architecture
// and machine type.
type guest struct {
	Type, Arch, Machine string
}

// preferredTypes are the domain types chosen first, in order: KVM when the
// daemon can open /dev/kvm (libvirt offers kvm only then), else QEMU's TCG.
var preferredTypes = []string{"kvm", "qemu"}

// preferredMachines are the machine types chosen first, in order.
var preferredMachines = []string{"pc", "q35"}

// chooseGuest picks the hvm guest of the host's architecture (else the first
// hvm guest) from caps; domainType, when set, is required rather than
// preferred.
func chooseGuest(caps *libvirtxml.Caps, domainType string) (guest, error) {
	hostArch := ""
	if caps.Host.CPU != nil {
		hostArch = caps.Host.CPU.Arch
	}
	var g *libvirtxml.CapsGuest
	for i := range caps.Guests {
		c := &caps.Guests[i]
		if c.OSType != "hvm" {
			continue
		}
		if g == nil || (c.Arch.Name == hostArch && g.Arch.Name != hostArch) {
			g = c
		}
	}
	if g == nil {
		return guest{}, fmt.Errorf("the hypervisor offers no hvm guest")
	}
	var dom *libvirtxml.CapsGuestDomain
	pick := func(t string) {
		for i := range g.Arch.Domains {
			if dom == nil && g.Arch.Domains[i].Type == t {
				dom = &g.Arch.Domains[i]
			}
		}
	}
	if domainType != "" {
		pick(domainType)
		if dom == nil {
			return guest{}, fmt.Errorf("the hypervisor offers no %s domain for %s (it offers %v)",
				domainType, g.Arch.Name, domainTypes(g))
		}
	} else {
		for _, t := range preferredTypes {
			pick(t)
		}
		if dom == nil && len(g.Arch.Domains) > 0 {
			dom = &g.Arch.Domains[0]
		}
		if dom == nil {
			return guest{}, fmt.Errorf("the hypervisor offers no domain type for %s", g.Arch.Name)
		}
	}
	machines := dom.Machines
	if len(machines) == 0 {
		machines = g.Arch.Machines
	}
	return guest{Type: dom.Type, Arch: g.Arch.Name, Machine: chooseMachine(machines)}, nil
}

// chooseMachine is the first preferred machine type offered, else the first
// one, else none (the hypervisor's default).
func chooseMachine(machines []libvirtxml.CapsGuestMachine) string {
	for _, want := range preferredMachines {
		if slices.ContainsFunc(machines, func(m libvirtxml.CapsGuestMachine) bool { return m.Name == want }) {
			return want
		}
	}
	if len(machines) > 0 {
		return machines[0].Name
	}
	return ""
}

func domainTypes(g *libvirtxml.CapsGuest) []string {
	var out []string
	for _, d := range g.Arch.Domains {
		out = append(out, d.Type)
	}
	return out
}
