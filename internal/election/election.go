// Package election decides who is a pool's master: the first election, a
// planned hand-over, the emergency transition a person asks for when the
// master is dead and HA is off (pool-emergency-transition-to-master), and the
// automatic replacement of a fenced master with HA on. Every change of master
// increases the epoch by one, so there is at most one master per epoch.
package election

import (
	"fmt"
	"sort"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Reasons of master decisions.
const (
	ReasonKeep          = "MasterLive"
	ReasonInitial       = "MasterElected"
	ReasonHandOver      = "MasterHandOver"
	ReasonEmergency     = "MasterEmergencyTransition"
	ReasonHAReplacement = "MasterReplaced"
	ReasonWaitFence     = "MasterUnreachable"
	ReasonWaitPerson    = "MasterDown"
	ReasonNoCandidate   = "NoMaster"
	ReasonReleased      = "MasterReleased"
)

// Host is a host as the election sees it.
type Host struct {
	Name  string
	Phase vpoolv1alpha1.HostPhase
	// Epoch is the pool epoch the host's agent follows.
	Epoch int64
	// Forgetting is true once a person asked to forget the host (the Host
	// is deleted, or spec.state is Forgotten).
	Forgetting bool
}

// Input is the pool as the election sees it.
type Input struct {
	HAEnabled bool
	Current   string // status.master
	Requested string // spec.master
	Epoch     int64
	Hosts     []Host
}

// Decision is the master to record, and why. Changed means a new epoch.
type Decision struct {
	Master  string
	Changed bool
	Reason  string
	Message string
}

func (in Input) find(name string) *Host {
	for i := range in.Hosts {
		if in.Hosts[i].Name == name {
			return &in.Hosts[i]
		}
	}
	return nil
}

func (in Input) live(name string) bool {
	h := in.find(name)
	return h != nil && h.Phase == vpoolv1alpha1.HostPhaseLive
}

// down reports whether the host is certainly not acting as master: fenced,
// forgotten or gone.
func (in Input) down(name string) bool {
	h := in.find(name)
	return h == nil || h.Phase == vpoolv1alpha1.HostPhaseFenced || h.Phase == vpoolv1alpha1.HostPhaseForgotten
}

// Decide returns the pool's master.
func Decide(in Input) Decision {
	cur, req := in.Current, in.Requested
	switch {
	case cur == "":
		return initial(in)
	case req != "" && req != cur && in.live(req) && in.live(cur):
		return changed(req, ReasonHandOver, fmt.Sprintf("planned hand-over from %s to %s (pool-designate-new-master)", cur, req))
	case in.live(cur):
		return Decision{Master: cur, Reason: ReasonKeep, Message: fmt.Sprintf("host %s is master", cur)}
	case in.down(cur) && in.forgetting(cur) && in.alone(cur):
		return changed("", ReasonReleased, fmt.Sprintf(
			"master %s is %s and being forgotten, and the pool has no other host: no master until a host is Live", cur, in.phase(cur)))
	case !in.HAEnabled && req != "" && req != cur && in.live(req):
		return changed(req, ReasonEmergency, fmt.Sprintf(
			"master %s is not Live: %s took over at a person's request (pool-emergency-transition-to-master)", cur, req))
	case !in.HAEnabled:
		return Decision{Master: cur, Reason: ReasonWaitPerson, Message: fmt.Sprintf(
			"master %s is %s and HA is off: members wait for it; if it is really dead, set spec.master to a Live member", cur, in.phase(cur))}
	case !in.down(cur):
		return Decision{Master: cur, Reason: ReasonWaitFence, Message: fmt.Sprintf(
			"master %s is %s: a new master is elected once it is fenced", cur, in.phase(cur))}
	}
	if c := in.candidate(); c != "" {
		return changed(c, ReasonHAReplacement, fmt.Sprintf("master %s is %s: HA elected %s", cur, in.phase(cur), c))
	}
	return Decision{Master: cur, Reason: ReasonNoCandidate, Message: fmt.Sprintf("master %s is %s and no host is Live to replace it", cur, in.phase(cur))}
}

// forgetting reports whether a person asked to forget the host; a host
// that is gone is forgotten.
func (in Input) forgetting(name string) bool {
	h := in.find(name)
	return h == nil || h.Forgetting || h.Phase == vpoolv1alpha1.HostPhaseForgotten
}

// alone reports whether every host but name is forgotten: nobody is left
// who could take over from it.
func (in Input) alone(name string) bool {
	for _, h := range in.Hosts {
		if h.Name != name && h.Phase != vpoolv1alpha1.HostPhaseForgotten {
			return false
		}
	}
	return true
}

func (in Input) phase(name string) string {
	if h := in.find(name); h != nil {
		return string(h.Phase)
	}
	return "gone"
}

func initial(in Input) Decision {
	if h := in.find(in.Requested); h != nil && (h.Phase == "" || h.Phase == vpoolv1alpha1.HostPhasePending) {
		return Decision{Reason: ReasonNoCandidate, Message: fmt.Sprintf("waiting for the requested master %s to heartbeat", in.Requested)}
	}
	if c := in.candidate(); c != "" {
		return changed(c, ReasonInitial, fmt.Sprintf("host %s is the first master", c))
	}
	return Decision{Reason: ReasonNoCandidate, Message: "no host is Live yet to become master"}
}

// candidate is the deterministic choice among Live hosts: the requested
// master if Live; else the Live hosts that follow the current epoch, then the
// other Live hosts, each by name.
func (in Input) candidate() string {
	if in.live(in.Requested) {
		return in.Requested
	}
	var live []Host
	for _, h := range in.Hosts {
		if h.Phase == vpoolv1alpha1.HostPhaseLive {
			live = append(live, h)
		}
	}
	sort.Slice(live, func(i, j int) bool {
		ci, cj := live[i].Epoch == in.Epoch, live[j].Epoch == in.Epoch
		if ci != cj {
			return ci
		}
		return live[i].Name < live[j].Name
	})
	if len(live) == 0 {
		return ""
	}
	return live[0].Name
}

func changed(master, reason, msg string) Decision {
	return Decision{Master: master, Changed: true, Reason: reason, Message: msg}
}
