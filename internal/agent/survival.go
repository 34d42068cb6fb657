package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/agent/statefile"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
)

// survival is the agent's side of the heartbeat SR: its own slot written
// every statefile period (half a heartbeat interval), the other hosts'
// slots read, and liveness.Survive's verdict: while it confirms an
// exemption the self-fence deadline and the watchdog's last pet move with
// it. The heartbeat loop publishes its renewals here (publish); the
// statefile goroutine reads them under mu.
type survival struct {
	dir   *statefile.Dir
	peers statefile.Peers
	boot  string

	mu      sync.Mutex
	lastOK  time.Time
	reached bool
	timeout time.Duration
	period  time.Duration
	holding bool
	// confirmed is the start of the last read that confirmed an exemption.
	confirmed time.Time
	counter   uint64
	exempt    bool
}

// exemptUntil is the deadline the last confirmed exemption allows (zero: none).
func (a *Agent) exemptUntil() time.Time {
	s := a.surv
	if s == nil {
		return time.Time{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.confirmed.IsZero() {
		return time.Time{}
	}
	return s.confirmed.Add(liveness.ExemptionGrace(s.timeout))
}

// publish hands the heartbeat loop's state to the statefile goroutine.
func (a *Agent) publish(reached bool) {
	s := a.surv
	if s == nil {
		return
	}
	s.mu.Lock()
	s.lastOK, s.reached, s.timeout, s.holding, s.period = a.lastOK, reached, a.timeout, a.holding, a.interval/2
	s.mu.Unlock()
}

// openStatefile opens the pool's heartbeat SR statefile, if the pool has
// one and this agent can reach its storage.
func (a *Agent) openStatefile(ctx context.Context, log logr.Logger, poolName string) {
	pool := &vpoolv1alpha1.Pool{}
	if a.cfg.StatefileDir == nil || a.client.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: poolName}, pool) != nil {
		return
	}
	sr := pool.Effective().HA.HeartbeatStorageRepository
	if sr == "" || !pool.Effective().HA.Enabled {
		return
	}
	path, err := a.cfg.StatefileDir(sr)
	if err == nil {
		var dir *statefile.Dir
		if dir, err = statefile.Open(path, a.cfg.Host); err == nil {
			a.surv = &survival{dir: dir, boot: a.cfg.BootID}
			log.Info("Statefile on the heartbeat SR", "storageRepository", sr, "path", path, "oDirect", dir.Direct())
			return
		}
	}
	log.Info("Warning: the heartbeat SR's statefile cannot be opened: a control-plane outage stops this host's VMs",
		"storageRepository", sr, "error", err.Error())
}

// runStatefile writes this host's slot and reads the others' every period
// until ctx is done.
func (a *Agent) runStatefile(ctx context.Context, log logr.Logger, poolName string) {
	s := a.surv
	defer func() { _ = s.dir.Close() }()
	for {
		s.mu.Lock()
		period := s.period
		s.mu.Unlock()
		if period <= 0 {
			period = time.Second
		}
		a.statefileStep(ctx, log, poolName)
		select {
		case <-ctx.Done():
			return
		case <-a.cfg.Clock.After(period):
		}
	}
}

// statefileStep is one write and read of the statefile, and the verdict.
func (a *Agent) statefileStep(ctx context.Context, log logr.Logger, poolName string) {
	s := a.surv
	s.mu.Lock()
	in := liveness.SurvivalInput{LastOK: s.lastOK, Reached: s.reached, Timeout: s.timeout, HeartbeatSR: true,
		Confirmed: s.confirmed}
	holding, period := s.holding, s.period
	s.counter++
	slot := statefile.Slot{Host: a.cfg.Host, BootID: s.boot, Counter: s.counter, Reached: s.reached, Period: period}
	s.mu.Unlock()
	if !holding || in.Timeout <= 0 {
		return
	}
	pool := &vpoolv1alpha1.Pool{}
	if err := a.client.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: poolName}, pool); err == nil {
		in.PoolHosts = int(pool.Status.Hosts.Total)
		in.MaxUnhealthyPercent = pool.Effective().Fencing.MaxUnhealthyPercent
	} else {
		in.MaxUnhealthyPercent = 50
	}
	in.Now = a.cfg.Clock.Now()
	slot.SinceOK = in.Now.Sub(in.LastOK)
	werr := s.dir.Write(slot)
	in.ReadAt = a.cfg.Clock.Now()
	records, rerr := s.dir.Read()
	in.ReadOK = werr == nil && rerr == nil
	if in.ReadOK {
		in.Peers = s.peers.Observe(in.ReadAt, records)
	}
	v := liveness.Survive(in)
	s.mu.Lock()
	was := s.exempt
	s.confirmed, s.exempt = v.Confirmed, v.Exempt
	s.mu.Unlock()
	a.notePetterExemption(v.Confirmed, in.Timeout)
	switch {
	case v.Exempt && !was:
		a.noteExemptionGranted(in.ReadAt)
		log.Info("Outage exemption granted: the VMs stay while the pool is cut off", "why", v.Message, "deadline", v.Deadline)
	case !v.Exempt && was:
		a.noteExemptionEnded(in.ReadAt)
		log.Info("Outage exemption ended", "why", v.Message, "deadline", v.Deadline,
			"renewWithin", v.Deadline.Sub(in.Now).Round(time.Millisecond))
	}
	if werr != nil || rerr != nil {
		log.V(1).Info("Statefile I/O failed", "write", fmt.Sprint(werr), "read", fmt.Sprint(rerr))
	}
}
