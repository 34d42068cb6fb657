package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	peers statefile.Peers
	boot  string
	// key names the statefile the pool's settings called for when last
	// followed, lastErr the last error opening it; both are the statefile
	// goroutine's own.
	key, lastErr string

	mu sync.Mutex
	// dir is the open statefile; nil while the pool has none (or it cannot
	// be opened). Only the statefile goroutine changes it.
	dir     *statefile.Dir
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

// SimStatefileDir is Config.StatefileDir for the sim driver: the statefile
// of a heartbeat SR is root/<SR>/statefile, root standing in for the shared
// storage of the pool's shared SRs (--sim-storage-dir).
func SimStatefileDir(root string) func(context.Context, *vpoolv1alpha1.StorageRepository) (string, error) {
	return func(_ context.Context, sr *vpoolv1alpha1.StorageRepository) (string, error) {
		return filepath.Join(root, sr.Name, "statefile"), nil
	}
}

// statefileKey says which statefile the pool's settings call for: the
// heartbeat SR's name, uid and generation, so that an edited SR (another
// storage pool) or another SR is opened afresh. Empty: none (HA off, no
// heartbeat SR, or the SR not readable yet).
func (a *Agent) statefileKey(ctx context.Context, poolName string) (string, *vpoolv1alpha1.StorageRepository) {
	pool := &vpoolv1alpha1.Pool{}
	if a.client.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: poolName}, pool) != nil {
		return "", nil
	}
	name := pool.Effective().HA.HeartbeatStorageRepository
	if name == "" || !pool.Effective().HA.Enabled {
		return "", nil
	}
	sr := &vpoolv1alpha1.StorageRepository{}
	if a.client.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: name}, sr) != nil {
		// Not created yet (the Pool says so in HeartbeatStorage): the
		// resolver decides from the name alone whether it can find it.
		sr = &vpoolv1alpha1.StorageRepository{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: a.cfg.Namespace}}
		sr.Spec.PoolRef.Name = poolName
		return "missing/" + name, sr
	}
	return fmt.Sprintf("%s/%s/%d", name, sr.UID, sr.Generation), sr
}

// followStatefile opens, closes or reopens the statefile as the pool's
// heartbeat SR setting says, read from the agent's cache at every period:
// setting spec.ha.heartbeatStorageRepository, clearing it or pointing it at
// another SR (or editing that SR's storage pool) takes effect while the
// agent runs. An SR whose statefile cannot be opened is tried again every
// period, its error logged once.
func (a *Agent) followStatefile(ctx context.Context, log logr.Logger, poolName string) {
	s := a.surv
	key, sr := a.statefileKey(ctx, poolName)
	if key == s.key && (s.dir != nil || key == "") {
		return
	}
	if s.dir != nil {
		_ = s.dir.Close()
		s.mu.Lock()
		// The last confirmation's bound stays: it rests on a read made.
		was := s.exempt
		s.dir, s.exempt = nil, false
		s.mu.Unlock()
		if was {
			a.noteExemptionEnded(a.cfg.Clock.Now())
		}
		if key == "" {
			log.Info("Warning: the pool no longer has a heartbeat SR: a control-plane outage longer than the heartbeat " +
				"timeout stops this host's VMs")
		}
	}
	s.key = key
	if key == "" {
		return
	}
	var path string
	var err error
	if path, err = a.cfg.StatefileDir(ctx, sr); err == nil {
		var dir *statefile.Dir
		if dir, err = statefile.Open(path, a.cfg.Host); err == nil {
			s.mu.Lock()
			// Another statefile: what was seen of the old one's slots says
			// nothing of this one's (a counter that differs is no move).
			s.dir, s.peers = dir, statefile.Peers{}
			s.mu.Unlock()
			s.lastErr = ""
			log.Info("Statefile on the heartbeat SR", "storageRepository", sr.Name, "path", path, "oDirect", dir.Direct())
			return
		}
	}
	if err.Error() != s.lastErr {
		s.lastErr = err.Error()
		log.Info("Warning: the heartbeat SR's statefile cannot be opened: a control-plane outage stops this host's VMs",
			"storageRepository", sr.Name, "error", err.Error())
	}
}

// hasStatefile reports whether a statefile is open.
func (a *Agent) hasStatefile() bool {
	s := a.surv
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dir != nil
}

// runStatefile follows the pool's heartbeat SR, and while it has one writes
// this host's slot and reads the others' every period, until ctx is done.
func (a *Agent) runStatefile(ctx context.Context, log logr.Logger, poolName string) {
	s := a.surv
	defer func() {
		if s.dir != nil {
			_ = s.dir.Close()
		}
	}()
	for {
		s.mu.Lock()
		period := s.period
		s.mu.Unlock()
		if period <= 0 {
			period = time.Second
		}
		a.followStatefile(ctx, log, poolName)
		if s.dir != nil {
			a.statefileStep(ctx, log, poolName)
		}
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
