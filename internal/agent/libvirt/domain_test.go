package libvirt

import (
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/poolkeeper/poolkeeper/internal/agent"
)

// parsed builds s's domain and reads its XML back, as libvirt would.
func parsed(t *testing.T, s spec) *libvirtxml.Domain {
	t.Helper()
	x, err := buildDomain(s).Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	d := &libvirtxml.Domain{}
	if err := d.Unmarshal(x); err != nil {
		t.Fatalf("unmarshal %s: %v", x, err)
	}
	return d
}

func TestBuildDomain(t *testing.T) {
	const vmUUID = "0b5e3f64-8d0c-4c1e-9a51-2f4f1c7d9e01"
	tag := Tag{Pool: "p", Host: "h1", Namespace: "ns", Name: "web", UUID: vmUUID, BootID: "b1"}
	base := spec{Name: "ns_web", UUID: vmUUID, Type: "kvm", Arch: "x86_64", Machine: "pc", Tag: tag}
	with := func(f func(*spec)) spec { s := base; f(&s); return s }
	tests := []struct {
		name  string
		spec  spec
		check func(t *testing.T, d *libvirtxml.Domain)
	}{{
		name: "diskless with defaults",
		spec: base,
		check: func(t *testing.T, d *libvirtxml.Domain) {
			eq(t, "type", d.Type, "kvm")
			eq(t, "name", d.Name, "ns_web")
			eq(t, "uuid", d.UUID, vmUUID)
			eq(t, "vcpus", d.VCPU.Value, uint(1))
			eq(t, "memory", d.Memory.Value, uint(64))
			eq(t, "memory unit", d.Memory.Unit, "MiB")
			eq(t, "machine", d.OS.Type.Machine, "pc")
			eq(t, "arch", d.OS.Type.Arch, "x86_64")
			eq(t, "os type", d.OS.Type.Type, "hvm")
			eq(t, "on_poweroff", d.OnPoweroff, "destroy")
			eq(t, "on_reboot", d.OnReboot, "restart")
			eq(t, "on_crash", d.OnCrash, "destroy")
			eq(t, "acpi", d.Features.ACPI != nil, true)
			eq(t, "disks", len(d.Devices.Disks), 0)
			eq(t, "serials", len(d.Devices.Serials), 1)
			eq(t, "serial pty", d.Devices.Serials[0].Source.Pty != nil, true)
			eq(t, "serial log", d.Devices.Serials[0].Log == nil, true)
			eq(t, "kernel", d.OS.Kernel, "")
		},
	}, {
		name: "resources, TCG, console log",
		spec: with(func(s *spec) { s.VCPUs, s.MemoryMiB, s.Type, s.ConsoleLog = 4, 2048, "qemu", "/var/log/c/ns_web.log" }),
		check: func(t *testing.T, d *libvirtxml.Domain) {
			eq(t, "type", d.Type, "qemu")
			eq(t, "vcpus", d.VCPU.Value, uint(4))
			eq(t, "memory", d.Memory.Value, uint(2048))
			eq(t, "serial log", d.Devices.Serials[0].Log.File, "/var/log/c/ns_web.log")
		},
	}, {
		name: "no valid uuid: libvirt picks one",
		spec: with(func(s *spec) { s.UUID = "not-a-uuid" }),
		check: func(t *testing.T, d *libvirtxml.Domain) {
			eq(t, "uuid", d.UUID, "")
		},
	}, {
		name: "disks in order, RO read-only, RW not shareable, first boots",
		spec: with(func(s *spec) {
			s.Disks = []source{{Pool: "sr1", Volume: "root", Format: "qcow2"}, {Pool: "sr1", Volume: "iso", ReadOnly: true}, {Pool: "sr2", Volume: "data"}}
		}),
		check: func(t *testing.T, d *libvirtxml.Domain) {
			ds := d.Devices.Disks
			eq(t, "disks", len(ds), 3)
			for i, want := range []struct {
				dev, pool, vol, format string
				ro                     bool
			}{{"vda", "sr1", "root", "qcow2", false}, {"vdb", "sr1", "iso", "raw", true}, {"vdc", "sr2", "data", "raw", false}} {
				eq(t, "target", ds[i].Target.Dev, want.dev)
				eq(t, "bus", ds[i].Target.Bus, "virtio")
				eq(t, "pool", ds[i].Source.Volume.Pool, want.pool)
				eq(t, "volume", ds[i].Source.Volume.Volume, want.vol)
				eq(t, "format", ds[i].Driver.Type, want.format)
				eq(t, want.dev+" readonly", ds[i].ReadOnly != nil, want.ro)
				eq(t, want.dev+" shareable", ds[i].Shareable != nil, false)
				eq(t, want.dev+" boots", ds[i].Boot != nil, i == 0)
			}
			eq(t, "boot order", ds[0].Boot.Order, uint(1))
		},
	}, {
		name: "direct kernel boot: no disk boots",
		spec: with(func(s *spec) {
			s.Boot = &agent.Boot{Kernel: "/boot/vmlinuz", Initrd: "/boot/initrd", Cmdline: "console=ttyS0"}
			s.Disks = []source{{Pool: "sr1", Volume: "root"}}
		}),
		check: func(t *testing.T, d *libvirtxml.Domain) {
			eq(t, "kernel", d.OS.Kernel, "/boot/vmlinuz")
			eq(t, "initrd", d.OS.Initrd, "/boot/initrd")
			eq(t, "cmdline", d.OS.Cmdline, "console=ttyS0")
			eq(t, "disk boots", d.Devices.Disks[0].Boot == nil, true)
		},
	}, {
		name: "interfaces keep their MAC",
		spec: with(func(s *spec) {
			s.Interfaces = []agent.Interface{{Name: "eth0", Network: "lan", MACAddress: "52:54:00:AB:CD:EF"}, {Name: "eth1", Network: "san"}}
		}),
		check: func(t *testing.T, d *libvirtxml.Domain) {
			is := d.Devices.Interfaces
			eq(t, "interfaces", len(is), 2)
			eq(t, "network", is[0].Source.Network.Network, "lan")
			eq(t, "mac", is[0].MAC.Address, "52:54:00:ab:cd:ef")
			eq(t, "model", is[0].Model.Type, "virtio")
			eq(t, "network 2", is[1].Source.Network.Network, "san")
			eq(t, "mac 2", is[1].MAC == nil, true)
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := parsed(t, tc.spec)
			tc.check(t, d)
			// The tag reads back from the metadata, whatever the test.
			if d.Metadata == nil {
				t.Fatal("no metadata")
			}
			got, err := parseTag(strings.TrimSpace(d.Metadata.XML))
			if err != nil {
				t.Fatal(err)
			}
			got.XMLName = tag.XMLName
			eq(t, "tag", got, tag)
		})
	}
}

func TestTagEscapes(t *testing.T) {
	in := Tag{Pool: `a<b>&"c"`, Host: "h", Namespace: "ns", Name: "vm", UUID: "u", BootID: "b"}
	out, err := parseTag(in.element())
	if err != nil {
		t.Fatal(err)
	}
	out.XMLName = in.XMLName
	eq(t, "tag", out, in)
	if !strings.Contains(in.element(), `xmlns:poolkeeper="`+Namespace+`"`) {
		t.Errorf("element %s does not declare the poolkeeper prefix", in.element())
	}
	// Another prefix for the same namespace (libvirt may rewrite it) reads the same.
	other := strings.ReplaceAll(in.element(), "poolkeeper", "pk")
	other = strings.Replace(other, `xmlns:pk="https://pk.io`, `xmlns:pk="https://poolkeeper.io`, 1)
	out2, err := parseTag(other)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "host under another prefix", out2.Host, "h")
}

func TestDiskTarget(t *testing.T) {
	for i, want := range map[int]string{0: "vda", 1: "vdb", 25: "vdz", 26: "vdaa", 27: "vdab", 51: "vdaz", 52: "vdba", 701: "vdzz", 702: "vdaaa"} {
		eq(t, "target", diskTarget(i), want)
	}
}

func TestChooseGuest(t *testing.T) {
	caps := func(arch string, guests ...libvirtxml.CapsGuest) *libvirtxml.Caps {
		return &libvirtxml.Caps{Host: libvirtxml.CapsHost{CPU: &libvirtxml.CapsHostCPU{Arch: arch}}, Guests: guests}
	}
	machines := func(names ...string) (out []libvirtxml.CapsGuestMachine) {
		for _, n := range names {
			out = append(out, libvirtxml.CapsGuestMachine{Name: n})
		}
		return out
	}
	hvm := func(arch string, ms []libvirtxml.CapsGuestMachine, types ...string) libvirtxml.CapsGuest {
		g := libvirtxml.CapsGuest{OSType: "hvm", Arch: libvirtxml.CapsGuestArch{Name: arch, Machines: ms}}
		for _, t := range types {
			g.Arch.Domains = append(g.Arch.Domains, libvirtxml.CapsGuestDomain{Type: t})
		}
		return g
	}
	x86 := machines("pc-i440fx-7.2", "pc", "q35", "pc-q35-7.2")
	tests := []struct {
		name, force string
		caps        *libvirtxml.Caps
		want        guest
		err         string
	}{
		{name: "kvm preferred", caps: caps("x86_64", hvm("i686", x86, "qemu", "kvm"), hvm("x86_64", x86, "qemu", "kvm")),
			want: guest{Type: "kvm", Arch: "x86_64", Machine: "pc"}},
		{name: "TCG without kvm", caps: caps("x86_64", hvm("x86_64", machines("q35", "isapc"), "qemu")),
			want: guest{Type: "qemu", Arch: "x86_64", Machine: "q35"}},
		{name: "test driver", caps: caps("i686", hvm("i686", machines("i440fx"), "test"), hvm("x86_64", machines("i440fx"), "test")),
			want: guest{Type: "test", Arch: "i686", Machine: "i440fx"}},
		{name: "forced qemu", force: "qemu", caps: caps("x86_64", hvm("x86_64", x86, "qemu", "kvm")),
			want: guest{Type: "qemu", Arch: "x86_64", Machine: "pc"}},
		{name: "forced kvm missing", force: "kvm", caps: caps("x86_64", hvm("x86_64", x86, "qemu")), err: "no kvm domain"},
		{name: "no hvm guest", caps: caps("x86_64", libvirtxml.CapsGuest{OSType: "exe"}), err: "no hvm guest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chooseGuest(tc.caps, tc.force)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "guest", got, tc.want)
		})
	}
}

func TestNewVolume(t *testing.T) {
	dir := newVolume("dir", "vdi-1", 1<<30)
	eq(t, "name", dir.Name, "vdi-1")
	eq(t, "capacity", dir.Capacity.Value, uint64(1<<30))
	eq(t, "format", dir.Target.Format.Type, "raw")
	eq(t, "sparse", dir.Allocation.Value, uint64(0))
	lvm := newVolume("logical", "vdi-1", 1<<30)
	eq(t, "lvm has no file format", lvm.Target == nil, true)
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}
