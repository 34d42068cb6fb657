package statefile

import (
	"time"

	"github.com/poolkeeper/poolkeeper/internal/liveness"
)

// Peers turns successive reads into what the survival rule may trust: a
// slot is known only when intact and when its counter (or boot) moved at
// a read that started within two of the writer's periods of this one, on
// the reader's clock. Its first sighting is not a move; a slot that stops
// moving (a writer gone, stale data) is unknown after two periods.
type Peers struct {
	seen map[string]peer
}

type peer struct {
	boot    string
	counter uint64
	movedAt time.Time
}

// Observe records the records of a read that started at readAt and returns
// them as the survival rule takes them.
func (p *Peers) Observe(readAt time.Time, records []Record) []liveness.PeerSlot {
	if p.seen == nil {
		p.seen = map[string]peer{}
	}
	out := make([]liveness.PeerSlot, 0, len(records))
	for _, r := range records {
		ps := liveness.PeerSlot{Host: r.Host}
		if r.Intact {
			prev, ok := p.seen[r.Host]
			if ok && (prev.boot != r.Slot.BootID || prev.counter != r.Slot.Counter) {
				prev.movedAt = readAt
			}
			prev.boot, prev.counter = r.Slot.BootID, r.Slot.Counter
			p.seen[r.Host] = prev
			fresh := !prev.movedAt.IsZero() && readAt.Sub(prev.movedAt) <= 2*r.Slot.Period
			ps.Known, ps.Reached, ps.SinceOK = fresh, r.Slot.Reached, r.Slot.SinceOK
		}
		out = append(out, ps)
	}
	return out
}
