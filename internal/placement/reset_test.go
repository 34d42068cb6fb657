package placement

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestResetVerdict(t *testing.T) {
	for name, tc := range map[string]struct {
		host   ResidentHost
		action ResetAction
		reason string
	}{
		"live host: nothing":          {ResidentHost{Name: "h1", Phase: "Live"}, ResetNone, ""},
		"pending host: nothing":       {ResidentHost{Name: "h1", Phase: "Pending"}, ResetNone, ""},
		"unreachable: hold":           {ResidentHost{Name: "h1", Phase: "Unreachable", Unreachable: true}, ResetHold, ReasonHostUnreachable},
		"fencing: hold":               {ResidentHost{Name: "h1", Phase: "Fencing", Unreachable: true}, ResetHold, ReasonHostUnreachable},
		"fenced, this boot: reset":    {ResidentHost{Name: "h1", Phase: "Fenced", Down: true, BootFenced: true}, ResetNow, ReasonVMReset},
		"fenced, other boot: confirm": {ResidentHost{Name: "h1", Phase: "Fenced", Down: true}, ResetConfirm, ""},
		"fenced, confirmed: reset":    {ResidentHost{Name: "h1", Phase: "Fenced", Down: true, Confirmed: true}, ResetNow, ReasonVMReset},
		"forgotten: confirm first":    {ResidentHost{Name: "h1", Phase: "Forgotten", Down: true}, ResetConfirm, ""},
		"gone, confirmed: reset":      {ResidentHost{Name: "h1", Phase: "Forgotten", Down: true, Confirmed: true}, ResetNow, ReasonVMReset},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			d := ResetVerdict(tc.host, "Running")
			g.Expect(d.Action).To(Equal(tc.action))
			g.Expect(d.Reason).To(Equal(tc.reason))
			if tc.reason != "" {
				g.Expect(d.Message).To(ContainSubstring("host h1 is " + tc.host.Phase))
			}
		})
	}
}
