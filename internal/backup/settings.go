package backup

import (
	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Settings are the pool settings a restore of d into a Pool of spec target
// takes from the dump (pool-restore-database restores the pool database,
// settings included): each one target leaves unset (see
// vpoolv1alpha1.HASet and FencingSet for the blocks with defaults). The
// master is the dump's spec.master, else the master at the dump's point in
// time. It returns nil when nothing is taken.
func Settings(d *Dump, target *vpoolv1alpha1.PoolSpec) *vpoolv1alpha1.PoolSettings {
	src := &d.Pool.Spec
	s := &vpoolv1alpha1.PoolSettings{}
	if target.HeartbeatTimeout == nil && src.HeartbeatTimeout != nil {
		s.HeartbeatTimeout = src.HeartbeatTimeout.DeepCopy()
	}
	if !vpoolv1alpha1.HASet(target.HA) && vpoolv1alpha1.HASet(src.HA) {
		s.HA = src.HA.DeepCopy()
	}
	if target.Master == "" {
		s.Master = src.Master
		if s.Master == "" {
			s.Master = d.Pool.Status.Master
		}
	}
	if target.DefaultStorageRepository == "" {
		s.DefaultStorageRepository = src.DefaultStorageRepository
	}
	if !vpoolv1alpha1.FencingSet(target.Fencing) && vpoolv1alpha1.FencingSet(src.Fencing) {
		s.Fencing = src.Fencing.DeepCopy()
	}
	if target.Backup == nil && src.Backup != nil {
		s.Backup = src.Backup.DeepCopy()
	}
	if *s == (vpoolv1alpha1.PoolSettings{}) {
		return nil
	}
	return s
}
