package libvirt

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/poolkeeper/poolkeeper/internal/agent"
)

// fileBackedPools are the pool types whose volumes are files: a new volume
// there is a sparse raw file.
var fileBackedPools = map[string]bool{"dir": true, "fs": true, "netfs": true}

// lookupPool finds a storage pool by name; a missing one is an error that
// says who should define it.
func lookupPool(conn *golibvirt.Libvirt, name string) (golibvirt.StoragePool, error) {
	p, err := conn.StoragePoolLookupByName(name)
	if isCode(err, golibvirt.ErrNoStoragePool) {
		return p, fmt.Errorf("libvirt storage pool %q is not defined on this host: the host's administrator defines it "+
			"(virsh pool-define), as the StorageRepository's spec.libvirt.storagePool names it", name)
	}
	if err != nil {
		return p, fmt.Errorf("looking up storage pool %q: %w", name, err)
	}
	return p, nil
}

// storagePool is the daemon's connection and its storage pool of that name.
func (d *Driver) storagePool(name string) (*golibvirt.Libvirt, golibvirt.StoragePool, error) {
	conn, _, err := d.client()
	if err != nil {
		return nil, golibvirt.StoragePool{}, err
	}
	p, err := lookupPool(conn, name)
	return conn, p, err
}

// Plug implements agent.StoragePlugger: the pool is looked up by name,
// started when inactive and refreshed.
func (d *Driver) Plug(_ context.Context, storagePool string) (err error) {
	defer func() { err = lost(err) }()
	conn, p, err := d.storagePool(storagePool)
	if err != nil {
		return err
	}
	active, err := conn.StoragePoolIsActive(p)
	if err != nil {
		return fmt.Errorf("reading the state of storage pool %q: %w", storagePool, err)
	}
	if active == 0 {
		if err := conn.StoragePoolCreate(p, 0); err != nil {
			return fmt.Errorf("starting storage pool %q: %w", storagePool, err)
		}
		d.log.Info("Started storage pool", "storagePool", storagePool)
	}
	if err := conn.StoragePoolRefresh(p, 0); err != nil {
		return fmt.Errorf("refreshing storage pool %q: %w", storagePool, err)
	}
	return nil
}

// EnsureVolume implements agent.StoragePlugger: the volume named name in
// storagePool (a VDI's is agent.VolumeName), created raw (sparse in a
// file-backed pool) with sizeBytes when missing. It returns the volume's
// key, libvirt's stable identifier of it (the file's path in a dir pool).
// An existing volume is used as it is, whatever its size or format.
func (d *Driver) EnsureVolume(_ context.Context, storagePool, name string, sizeBytes int64) (_ string, err error) {
	defer func() { err = lost(err) }()
	conn, p, err := d.storagePool(storagePool)
	if err != nil {
		return "", err
	}
	if v, err := conn.StorageVolLookupByName(p, name); err == nil {
		return v.Key, nil
	} else if !isCode(err, golibvirt.ErrNoStorageVol) {
		return "", fmt.Errorf("looking up volume %q in storage pool %q: %w", name, storagePool, err)
	}
	if sizeBytes <= 0 {
		return "", fmt.Errorf("creating volume %q in storage pool %q: size %d is not positive", name, storagePool, sizeBytes)
	}
	pool, err := poolDefinition(conn, p)
	if err != nil {
		return "", err
	}
	volXML, err := newVolume(pool.Type, name, sizeBytes).Marshal()
	if err != nil {
		return "", err
	}
	v, err := conn.StorageVolCreateXML(p, volXML, 0)
	if err != nil {
		// Created meanwhile by another call: that one is the volume.
		if v2, err2 := conn.StorageVolLookupByName(p, name); err2 == nil {
			return v2.Key, nil
		}
		return "", fmt.Errorf("creating volume %q (%d bytes) in storage pool %q: %w", name, sizeBytes, storagePool, err)
	}
	d.log.Info("Created volume", "storagePool", storagePool, "volume", name, "bytes", sizeBytes, "key", v.Key)
	return v.Key, nil
}

// poolDefinition is storage pool p's definition, as the daemon has it.
func poolDefinition(conn *golibvirt.Libvirt, p golibvirt.StoragePool) (*libvirtxml.StoragePool, error) {
	poolXML, err := conn.StoragePoolGetXMLDesc(p, 0)
	if err != nil {
		return nil, fmt.Errorf("reading storage pool %q: %w", p.Name, err)
	}
	def := &libvirtxml.StoragePool{}
	if err := def.Unmarshal(poolXML); err != nil {
		return nil, fmt.Errorf("parsing storage pool %q: %w", p.Name, err)
	}
	return def, nil
}

// newVolume is the definition of a new volume in a pool of poolType: raw,
// and sparse (no allocation) where the pool's volumes are files.
func newVolume(poolType, name string, sizeBytes int64) *libvirtxml.StorageVolume {
	v := &libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: uint64(sizeBytes)},
	}
	if fileBackedPools[poolType] {
		v.Allocation = &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: 0}
		v.Target = &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "raw"}}
	}
	return v
}

// resolveDisk finds a disk's volume on this host (a VDI of namespace) and
// reads its format.
func resolveDisk(conn *golibvirt.Libvirt, namespace string, disk agent.Disk) (source, error) {
	if disk.StoragePool == "" && disk.Volume == "" {
		return source{}, fmt.Errorf("disk %s (VDI %s) has no volume: its StorageRepository names no libvirt storage pool "+
			"(spec.libvirt.storagePool)", disk.Name, disk.VirtualDisk)
	}
	vol, err := findVolume(conn, namespace, disk)
	if err != nil {
		return source{}, err
	}
	volXML, err := conn.StorageVolGetXMLDesc(vol, 0)
	if err != nil {
		return source{}, fmt.Errorf("disk %s: reading volume %s: %w", disk.Name, vol.Key, err)
	}
	v := &libvirtxml.StorageVolume{}
	if err := v.Unmarshal(volXML); err != nil {
		return source{}, fmt.Errorf("disk %s: parsing volume %s: %w", disk.Name, vol.Key, err)
	}
	// libvirt probes a file's format: a guest could write an image header
	// into its raw disk, and a backing file would then let it read any file
	// of the host.
	if v.BackingStore != nil && v.BackingStore.Path != "" {
		return source{}, fmt.Errorf("disk %s: volume %s has a backing file (%s): poolkeeper attaches no such volume",
			disk.Name, vol.Key, v.BackingStore.Path)
	}
	format := "raw"
	if v.Target != nil && v.Target.Format != nil && v.Target.Format.Type != "" {
		format = v.Target.Format.Type
	}
	return source{Pool: vol.Pool, Volume: vol.Name, Format: format, ReadOnly: disk.Mode == "RO"}, nil
}

// findVolume looks a disk's volume up by its key (status.volume) when that
// volume is in the disk's storage pool, else by its VDI's volume name in
// that pool, agent.VolumeName (a pool restored onto other storage holds the
// same names under new keys).
func findVolume(conn *golibvirt.Libvirt, namespace string, disk agent.Disk) (golibvirt.StorageVol, error) {
	var names []string
	if disk.VirtualDisk != "" {
		names = []string{agent.VolumeName(namespace, disk.VirtualDisk)}
	}
	v, ok, err := lookupVolume(conn, disk.StoragePool, disk.Volume, names)
	if err != nil {
		return v, fmt.Errorf("disk %s: %w", disk.Name, err)
	}
	if !ok {
		return v, fmt.Errorf("disk %s: the volume of VDI %s (key %q) is not in storage pool %q on this host",
			disk.Name, disk.VirtualDisk, disk.Volume, disk.StoragePool)
	}
	return v, nil
}

// FindVolume implements agent.VolumeFinder: the volume of storagePool whose
// key is key (or, for a key that is a path, whose path it is), else the
// first of names there. It creates nothing.
func (d *Driver) FindVolume(_ context.Context, storagePool, key string, names ...string) (_ string, ok bool, err error) {
	defer func() { err = lost(err) }()
	conn, _, err := d.client()
	if err != nil {
		return "", false, err
	}
	if storagePool == "" {
		return "", false, errors.New("FindVolume: no storage pool")
	}
	v, ok, err := lookupVolume(conn, storagePool, key, names)
	if err != nil || !ok {
		return "", false, err
	}
	return v.Key, true, nil
}

// lookupVolume finds the volume whose key is key (or, for a key that is a
// path, whose path it is) when it is in storagePool (or any pool, when
// storagePool is empty), else the first of names in storagePool; ok is
// false when there is none.
func lookupVolume(conn *golibvirt.Libvirt, storagePool, key string, names []string) (_ golibvirt.StorageVol, ok bool, _ error) {
	if key != "" {
		v, err := conn.StorageVolLookupByKey(key)
		if err != nil && strings.HasPrefix(key, "/") {
			v, err = conn.StorageVolLookupByPath(key)
		}
		if err == nil && (storagePool == "" || v.Pool == storagePool) {
			return v, true, nil
		}
	}
	if storagePool == "" || len(names) == 0 {
		return golibvirt.StorageVol{}, false, nil
	}
	p, err := lookupPool(conn, storagePool)
	if err != nil {
		return golibvirt.StorageVol{}, false, err
	}
	for _, name := range names {
		v, err := conn.StorageVolLookupByName(p, name)
		if err == nil {
			return v, true, nil
		}
		if !isCode(err, golibvirt.ErrNoStorageVol) {
			return v, false, fmt.Errorf("looking up volume %q in storage pool %q: %w", name, storagePool, err)
		}
	}
	return golibvirt.StorageVol{}, false, nil
}

// Networks implements agent.NetworkLister: the active libvirt networks.
func (d *Driver) Networks(context.Context) (_ []string, err error) {
	defer func() { err = lost(err) }()
	conn, _, err := d.client()
	if err != nil {
		return nil, err
	}
	nets, _, err := conn.ConnectListAllNetworks(1, golibvirt.ConnectListNetworksActive)
	if err != nil {
		return nil, fmt.Errorf("listing networks: %w", err)
	}
	names := make([]string, 0, len(nets))
	for _, n := range nets {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	return names, nil
}
