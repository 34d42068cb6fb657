package libvirt

import (
	"context"
	"fmt"
	"path/filepath"
)

// StatefileDirName is the directory, in the target of a heartbeat SR's
// storage pool, that holds the statefiles of the pools using that SR: one
// subdirectory <namespace>_<pool> per pool. Kubernetes names never begin
// with a dot, so no VirtualDisk's volume can take this name; libvirt lists
// it as a volume of type dir, which nothing uses.
const StatefileDirName = ".poolkeeper-statefile"

// StatefileDir resolves a heartbeat SR backed by storagePool to the
// directory of pool's statefile on this host: a directory in the storage
// pool's target path, which a shared pool (netfs, or one directory for every
// host) shows every host alike. The storage pool is plugged first, as for a
// VDI's SR; a pool with no target path (an iSCSI or RBD pool) holds no
// files, so it cannot hold a statefile.
func (d *Driver) StatefileDir(ctx context.Context, storagePool, namespace, pool string) (_ string, err error) {
	if err := d.Plug(ctx, storagePool); err != nil {
		return "", err
	}
	defer func() { err = lost(err) }()
	conn, p, err := d.storagePool(storagePool)
	if err != nil {
		return "", err
	}
	def, err := poolDefinition(conn, p)
	if err != nil {
		return "", err
	}
	if !fileBackedPools[def.Type] || def.Target == nil || def.Target.Path == "" {
		return "", fmt.Errorf("storage pool %q (type %s) has no directory to hold the heartbeat statefile: "+
			"a heartbeat SR needs a file-backed storage pool (dir, fs or netfs) shared by every host", storagePool, def.Type)
	}
	return filepath.Join(def.Target.Path, StatefileDirName, namespace+"_"+pool), nil
}
