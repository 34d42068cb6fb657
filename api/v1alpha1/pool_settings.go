package v1alpha1

import (
	"fmt"
	"strings"
	"time"
)

// Default heartbeat timeouts (spec.heartbeatTimeout unset, nothing restored).
const (
	// DefaultHeartbeatTimeout is XenServer's 600s, without HA.
	DefaultHeartbeatTimeout = 600 * time.Second
	// DefaultHAHeartbeatTimeout is the timeout with HA on.
	DefaultHAHeartbeatTimeout = 60 * time.Second
)

// EffectiveSettings are a pool's settings in force: each from the Pool's
// spec when set there, else from status.restoredSettings, else the default.
// Every controller and agent reads a pool's settings through Pool.Effective,
// never from the spec alone.
type EffectiveSettings struct {
	// HeartbeatTimeout in force (never zero).
	HeartbeatTimeout time.Duration
	// HA in force.
	HA HASpec
	// Master is the requested master ("" for none).
	Master string
	// DefaultStorageRepository is the default SR ("" for none).
	DefaultStorageRepository string
	// Fencing bounds in force (MaxConcurrent at least 1).
	Fencing PoolFencingSpec
	// Backup is the backup schedule in force (nil for none).
	Backup *BackupSchedule
}

// Effective computes the settings in force from spec and
// status.restoredSettings. spec.ha and spec.fencing count as set once any of
// their fields differs from its default: a bool or a defaulted number cannot
// tell "unset" from its default.
func (p *Pool) Effective() EffectiveSettings {
	var r PoolSettings
	if p.Status.RestoredSettings != nil {
		r = *p.Status.RestoredSettings
	}
	e := EffectiveSettings{HA: p.Spec.HA, Master: p.Spec.Master, DefaultStorageRepository: p.Spec.DefaultStorageRepository,
		Fencing: p.Spec.Fencing, Backup: p.Spec.Backup}
	if !HASet(p.Spec.HA) && r.HA != nil {
		e.HA = *r.HA
	}
	if !FencingSet(p.Spec.Fencing) && r.Fencing != nil {
		e.Fencing = *r.Fencing
	}
	e.Fencing.MaxConcurrent = max(e.Fencing.MaxConcurrent, 1)
	if e.Master == "" {
		e.Master = r.Master
	}
	if e.DefaultStorageRepository == "" {
		e.DefaultStorageRepository = r.DefaultStorageRepository
	}
	if e.Backup == nil {
		e.Backup = r.Backup
	}
	switch {
	case p.Spec.HeartbeatTimeout != nil && p.Spec.HeartbeatTimeout.Duration > 0:
		e.HeartbeatTimeout = p.Spec.HeartbeatTimeout.Duration
	case r.HeartbeatTimeout != nil && r.HeartbeatTimeout.Duration > 0:
		e.HeartbeatTimeout = r.HeartbeatTimeout.Duration
	case e.HA.Enabled:
		e.HeartbeatTimeout = DefaultHAHeartbeatTimeout
	default:
		e.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	return e
}

// HASet reports whether spec.ha says anything its defaults do not.
func HASet(ha HASpec) bool {
	return ha != HASpec{} && ha != HASpec{HostFailuresToTolerate: 1}
}

// FencingSet reports whether spec.fencing says anything its defaults do not.
func FencingSet(f PoolFencingSpec) bool {
	return f != PoolFencingSpec{} && f != PoolFencingSpec{MaxConcurrent: 1, MaxUnhealthyPercent: 50}
}

// String lists the settings that are set, for a condition message, for
// example "heartbeatTimeout 30s, ha (enabled, tolerating 1 host failure),
// master xen-1".
func (s *PoolSettings) String() string {
	var parts []string
	if s.HeartbeatTimeout != nil {
		parts = append(parts, "heartbeatTimeout "+s.HeartbeatTimeout.Duration.String())
	}
	if s.HA != nil {
		state := "disabled"
		if s.HA.Enabled {
			state = "enabled"
		}
		parts = append(parts, fmt.Sprintf("ha (%s, tolerating %s)", state, plural(int(s.HA.HostFailuresToTolerate), "host failure")))
	}
	if s.Master != "" {
		parts = append(parts, "master "+s.Master)
	}
	if s.DefaultStorageRepository != "" {
		parts = append(parts, "defaultStorageRepository "+s.DefaultStorageRepository)
	}
	if s.Fencing != nil {
		parts = append(parts, fmt.Sprintf("fencing (maxConcurrent %d, maxUnhealthyPercent %d)",
			s.Fencing.MaxConcurrent, s.Fencing.MaxUnhealthyPercent))
	}
	if s.Backup != nil {
		parts = append(parts, fmt.Sprintf("backup (schedule %q, retain %d)", s.Backup.Schedule, s.Backup.Retain))
	}
	return strings.Join(parts, ", ")
}

// plural counts n things: "1 host failure", "2 host failures".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
