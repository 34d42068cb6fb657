package placement

import "fmt"

// Reasons of decisions about a VM's disks and the references they make.
const (
	// ReasonDiskInOtherPool: a disk's VDI, or the VDI's SR, belongs to another pool.
	ReasonDiskInOtherPool = "DiskInOtherPool"
	// ReasonLocalDisksApart: two disks are on local SRs of different hosts.
	ReasonLocalDisksApart = "LocalDisksOnDifferentHosts"
	// ReasonPinnedElsewhere: a disk's local SR belongs to another host than
	// the one the VM is on.
	ReasonPinnedElsewhere = "DiskPinnedToAnotherHost"
	// ReasonSRNotFound: a VDI's spec.storageRepository names no SR.
	ReasonSRNotFound = "StorageRepositoryNotFound"
	// ReasonSRInOtherPool: a VDI's spec.storageRepository is an SR of another pool.
	ReasonSRInOtherPool = "StorageRepositoryInOtherPool"
)

// Disk is what is known of one disk of a VM: its VDI and the VDI's SR.
type Disk struct {
	// Index is the disk's position in spec.disks; Name its name there.
	Index int
	Name  string
	// VDI is the VirtualDisk it names; VDIFound whether it exists, VDIPool its pool.
	VDI      string
	VDIFound bool
	VDIPool  string
	// SR is the VDI's spec.storageRepository; SRFound whether it exists.
	SR      string
	SRFound bool
	SRPool  string
	// SRHost is the host of a local SR ("" for a shared one).
	SRHost string
}

// field is the spec field of the VM that names the disk's VDI.
func (d Disk) field() string {
	return fmt.Sprintf("spec.disks[%d].virtualDisk", d.Index)
}

// StorageRef checks a VDI's spec.storageRepository against the SR it names:
// it must exist and belong to the VDI's pool. It returns nil when it does.
func StorageRef(vdiPool, sr string, srFound bool, srPool string) *Decision {
	switch {
	case !srFound:
		return &Decision{Reason: ReasonSRNotFound, Message: fmt.Sprintf(
			"spec.storageRepository: StorageRepository %q not found", sr)}
	case srPool != vdiPool:
		return &Decision{Reason: ReasonSRInOtherPool, Message: fmt.Sprintf(
			"spec.storageRepository: StorageRepository %q belongs to pool %s, not to this VDI's pool %s", sr, srPool, vdiPool)}
	}
	return nil
}

// CheckDisks decides from a VM's disks whether the VM can run and where: each
// VDI must exist and be of the VM's pool, on an SR of that pool, and every
// local SR among them must be of one host, to which the VM is then pinned.
// It returns that host ("" if no disk is local) or why the VM cannot run.
func CheckDisks(pool string, disks []Disk) (pinnedTo string, blocked *Decision) {
	var pin *Disk
	for i := range disks {
		d := &disks[i]
		if b := d.refused(pool); b != nil {
			return "", b
		}
		if d.SRHost == "" {
			continue
		}
		if pin != nil && pin.SRHost != d.SRHost {
			return "", &Decision{Reason: ReasonLocalDisksApart, Message: fmt.Sprintf(
				"%s: VDI %s is on a local SR of host %s and %s: VDI %s on a local SR of host %s; "+
					"a local SR's disks are usable only on its host, so the VM can run nowhere",
				pin.field(), pin.VDI, pin.SRHost, d.field(), d.VDI, d.SRHost)}
		}
		if pin == nil {
			pin = d
		}
	}
	if pin == nil {
		return "", nil
	}
	return pin.SRHost, nil
}

// refused says why one disk cannot be used by a VM of pool, or nil.
func (d *Disk) refused(pool string) *Decision {
	switch {
	case !d.VDIFound:
		return &Decision{Reason: ReasonDiskUnavailable, Message: fmt.Sprintf("%s: VirtualDisk %q not found", d.field(), d.VDI)}
	case d.VDIPool != pool:
		return &Decision{Reason: ReasonDiskInOtherPool, Message: fmt.Sprintf(
			"%s: VirtualDisk %q belongs to pool %s, not to the VM's pool %s", d.field(), d.VDI, d.VDIPool, pool)}
	case !d.SRFound:
		return &Decision{Reason: ReasonDiskUnavailable, Message: fmt.Sprintf(
			"%s: VDI %s: StorageRepository %q not found", d.field(), d.VDI, d.SR)}
	case d.SRPool != pool:
		return &Decision{Reason: ReasonDiskInOtherPool, Message: fmt.Sprintf(
			"%s: VDI %s is on StorageRepository %q of pool %s, not of the VM's pool %s", d.field(), d.VDI, d.SR, d.SRPool, pool)}
	}
	return nil
}

// MayRunOn decides whether a VM of pool may have its disks locked for, and
// be started on, host: CheckDisks, and no local SR of another host.
func MayRunOn(pool, host string, disks []Disk) *Decision {
	pinned, blocked := CheckDisks(pool, disks)
	if blocked != nil || pinned == "" || pinned == host {
		return blocked
	}
	for _, d := range disks {
		if d.SRHost == pinned {
			return &Decision{Reason: ReasonPinnedElsewhere, Message: fmt.Sprintf(
				"%s: VDI %s is on a local SR of host %s: the VM cannot run on %s", d.field(), d.VDI, pinned, host)}
		}
	}
	return nil
}
