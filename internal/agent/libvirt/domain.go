package libvirt

import (
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"github.com/poolkeeper/poolkeeper/internal/agent"
)

// Namespace is the XML namespace of poolkeeper's element in a domain's
// <metadata>; Prefix is the prefix it is written with.
const (
	Namespace = "https://poolkeeper.io/xmlns/domain/1"
	Prefix    = "poolkeeper"
)

// Defaults for a VM that does not say.
const (
	DefaultVCPUs     = 1
	DefaultMemoryMiB = 64
)

// Tag is poolkeeper's mark on a domain it started: which pool, host, VM and
// agent boot it belongs to. A domain without it is not poolkeeper's. It is
// read with no namespace because libvirt returns the element of a namespace
// (virDomainGetMetadata) without its declaration.
type Tag struct {
	XMLName   xml.Name `xml:"vm"`
	Pool      string   `xml:"pool"`
	Host      string   `xml:"host"`
	Namespace string   `xml:"namespace"`
	Name      string   `xml:"name"`
	UUID      string   `xml:"uuid"`
	BootID    string   `xml:"bootID"`
}

// element is the tag as libvirt stores it: one element, with a prefix, in
// poolkeeper's namespace.
func (t Tag) element() string {
	var b strings.Builder
	fmt.Fprintf(&b, "<%s:vm xmlns:%s=%q>", Prefix, Prefix, Namespace)
	for _, f := range [][2]string{{"pool", t.Pool}, {"host", t.Host}, {"namespace", t.Namespace},
		{"name", t.Name}, {"uuid", t.UUID}, {"bootID", t.BootID}} {
		fmt.Fprintf(&b, "<%s:%s>", Prefix, f[0])
		_ = xml.EscapeText(&b, []byte(f[1])) // a strings.Builder never fails
		fmt.Fprintf(&b, "</%s:%s>", Prefix, f[0])
	}
	fmt.Fprintf(&b, "</%s:vm>", Prefix)
	return b.String()
}

// parseTag reads the element libvirt returns for poolkeeper's namespace.
func parseTag(s string) (Tag, error) {
	var t Tag
	if err := xml.Unmarshal([]byte(s), &t); err != nil {
		return Tag{}, fmt.Errorf("parsing poolkeeper metadata: %w", err)
	}
	return t, nil
}

// DomainName is the libvirt domain name of a VM: <namespace>_<name>. Neither
// a namespace nor a VM name can hold "_", so the name is unambiguous.
func DomainName(namespace, name string) string { return namespace + "_" + name }

// source is a disk's volume, resolved on the host.
type source struct {
	// Pool and Volume name the libvirt storage pool and volume; Format is
	// the volume's format (raw, qcow2).
	Pool, Volume, Format string
	ReadOnly             bool
}

// spec is everything a domain's XML is built from: the VM, resolved on
// this host.
type spec struct {
	Name string
	// UUID is the VM's; the domain's UUID when it is a valid UUID.
	UUID string
	// Type (kvm, qemu, test), Arch and Machine come from the host's
	// capabilities.
	Type, Arch, Machine string
	VCPUs, MemoryMiB    int64
	Tag                 Tag
	Disks               []source
	Interfaces          []agent.Interface
	Boot                *agent.Boot
	// ConsoleLog, when set, is the file the serial console is logged to.
	ConsoleLog string
}

// buildDomain is a VM's transient domain definition. It is a pure function
// of s.
func buildDomain(s spec) *libvirtxml.Domain {
	vcpus, mem := s.VCPUs, s.MemoryMiB
	if vcpus <= 0 {
		vcpus = DefaultVCPUs
	}
	if mem <= 0 {
		mem = DefaultMemoryMiB
	}
	d := &libvirtxml.Domain{
		Type:       s.Type,
		Name:       s.Name,
		Metadata:   &libvirtxml.DomainMetadata{XML: s.Tag.element()},
		Memory:     &libvirtxml.DomainMemory{Value: uint(mem), Unit: "MiB"},
		VCPU:       &libvirtxml.DomainVCPU{Placement: "static", Value: uint(vcpus)},
		OS:         &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Arch: s.Arch, Machine: s.Machine, Type: "hvm"}},
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}, APIC: &libvirtxml.DomainFeatureAPIC{}},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices:    &libvirtxml.DomainDeviceList{},
	}
	if u, err := uuid.Parse(s.UUID); err == nil {
		d.UUID = u.String()
	}
	if s.Boot != nil {
		d.OS.Kernel, d.OS.Initrd, d.OS.Cmdline = s.Boot.Kernel, s.Boot.Initrd, s.Boot.Cmdline
	}
	for i, src := range s.Disks {
		disk := libvirtxml.DomainDisk{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: src.Format},
			Source: &libvirtxml.DomainDiskSource{Volume: &libvirtxml.DomainDiskSourceVolume{Pool: src.Pool, Volume: src.Volume}},
			Target: &libvirtxml.DomainDiskTarget{Dev: diskTarget(i), Bus: "virtio"},
		}
		if disk.Driver.Type == "" {
			disk.Driver.Type = "raw"
		}
		if src.ReadOnly {
			disk.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
		}
		if i == 0 && s.Boot == nil {
			disk.Boot = &libvirtxml.DomainDeviceBoot{Order: 1}
		}
		d.Devices.Disks = append(d.Devices.Disks, disk)
	}
	for _, ifc := range s.Interfaces {
		x := libvirtxml.DomainInterface{
			Source: &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: ifc.Network}},
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		}
		if ifc.MACAddress != "" {
			x.MAC = &libvirtxml.DomainInterfaceMAC{Address: strings.ToLower(ifc.MACAddress)}
		}
		d.Devices.Interfaces = append(d.Devices.Interfaces, x)
	}
	serial := libvirtxml.DomainSerial{Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}}}
	if s.ConsoleLog != "" {
		serial.Log = &libvirtxml.DomainChardevLog{File: s.ConsoleLog, Append: "on"}
	}
	d.Devices.Serials = []libvirtxml.DomainSerial{serial}
	d.Devices.Consoles = []libvirtxml.DomainConsole{{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Target: &libvirtxml.DomainConsoleTarget{Type: "serial"},
	}}
	d.Devices.MemBalloon = &libvirtxml.DomainMemBalloon{Model: "none"}
	return d
}

// diskTarget is the device name of the i-th disk: vda ... vdz, vdaa ...
func diskTarget(i int) string {
	name := ""
	for i++; i > 0; i = (i - 1) / 26 {
		name = string(rune('a'+(i-1)%26)) + name
	}
	return "vd" + name
}
