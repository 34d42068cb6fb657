// Package libvirt is the agent's libvirt host driver: VMs are libvirt
// domains, reached over libvirt's RPC protocol (github.com/digitalocean/go-libvirt,
// no cgo) at a URI such as qemu:///system, qemu+unix:///system?socket=PATH or
// test:///default.
//
// # Which domains are poolkeeper's
//
// A VM's domain is named <namespace>_<vm> and carries, in its <metadata>, an
// element in poolkeeper's XML namespace (Namespace, prefix poolkeeper) naming
// the pool, host, namespace, VM name, VM uuid and the boot ID of the agent
// that started it. The driver lists, stops and destroys only the domains
// tagged with its own host and namespace: an untagged domain, or one tagged
// for another host (two simulated hosts may share a daemon), is never
// touched, and Start refuses to start a VM whose name such a domain holds.
//
// A domain tagged for this host with another boot ID is adopted: it was
// started by an earlier run of the agent on this host, and with a real
// driver the agent's boot ID is the kernel's, so a domain that is still
// running is of the same host boot (a host reset kills every QEMU). A
// restarted or upgraded agent therefore finds its VMs running and stops
// none of them.
//
// # Transient domains
//
// Start creates a transient domain (virDomainCreateXML), never a persistent
// definition. libvirt keeps a transient domain across a restart of its
// daemon, so VMs survive a libvirtd restart as they survive an agent
// restart; but a transient domain leaves nothing behind when its QEMU dies:
// after a host reset (power loss, or the watchdog's reset that SIGKILLs
// every QEMU) the host has no definition that libvirt could autostart or an
// administrator could start by mistake while the VM runs elsewhere — "a reset
// host runs nothing" (invariant 1). The VM's definition lives in the API
// server; a halted VM needs no trace on the host, and Running only lists
// active domains. A domain of the VM's name that is defined but inactive is
// refused, not started: poolkeeper does not run a stored definition it did
// not write.
//
// The domain's UUID is the VM's status.uuid when that is a valid UUID, so
// that a VM keeps its UUID from host to host. Its type is kvm when the
// daemon offers it (it can open /dev/kvm), else qemu (TCG); its machine
// type is pc when the capabilities list it. on_poweroff and on_crash
// destroy the domain (a VM that powered off or crashed is halted, and the
// agent reports it), on_reboot restarts it in the same QEMU.
//
// # Disks and storage
//
// A disk is a <disk type='volume'> naming the storage pool and volume, so
// libvirt maps it to a file, a block device or a network disk as the pool
// type says; its format is the volume's own, and a volume with a backing
// file is refused. RO disks are <readonly/>; RW disks are never
// <shareable/> (one writer, guarded by the VDI's lock). Targets are vda,
// vdb ... in spec order, virtio; the first disk boots unless the VM has a
// direct kernel boot.
//
// A VDI's volume is named <namespace>_<vdi> (agent.VolumeName), as domains
// are, so that two namespaces' VDIs of one name never share a volume of a
// storage pool their SRs share. EnsureVolume creates raw volumes, sparse in
// file-backed pools: raw works on every pool type (dir, fs, netfs, logical,
// rbd), has no metadata for two writers to corrupt, and the host can read a
// guest's writes directly. It returns the volume's key, libvirt's stable
// name for it (the file's path in a dir pool, an LV's UUID, a LUN's WWN),
// which FindVolume and Start look up again, falling back to the volume's
// name in the disk's pool when the key is not there (the SR moved to other
// storage); neither creates a volume.
//
// # Connection
//
// New needs the daemon reachable (a wrong URI is reported at once); after
// that the driver reconnects whenever the daemon goes away. While
// disconnected every method returns ErrDisconnected: Running does not claim
// that the VMs stopped, so the agent reports nothing rather than Halted.
// Changes signals every lifecycle event of this host's domains (events, no
// polling), and the loss and return of the connection; the subscription is
// renewed on every connection, before anything is listed on it.
package libvirt
