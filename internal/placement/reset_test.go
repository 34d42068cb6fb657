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
		"live host: nothing":                    {ResidentHost{Name: "h1", Phase: "Live"}, ResetNone, ""},
		"pending host: nothing":                 {ResidentHost{Name: "h1", Phase: "Pending"}, ResetNone, ""},
		"unreachable: hold":                     {ResidentHost{Name: "h1", Phase: "Unreachable", Unreachable: true}, ResetHold, ReasonHostUnreachable},
		"fencing: hold":                         {ResidentHost{Name: "h1", Phase: "Fencing", Unreachable: true}, ResetHold, ReasonHostUnreachable},
		"fenced, this boot: reset":              {ResidentHost{Name: "h1", Phase: "Fenced", Down: true, BootFenced: true}, ResetNow, ReasonVMReset},
		"fenced, other boot: confirm":           {ResidentHost{Name: "h1", Phase: "Fenced", Down: true}, ResetConfirm, ""},
		"fenced, confirmed: reset":              {ResidentHost{Name: "h1", Phase: "Fenced", Down: true, Confirmed: true}, ResetNow, ReasonVMReset},
		"forgotten: confirm first":              {ResidentHost{Name: "h1", Phase: "Forgotten", Down: true}, ResetConfirm, ""},
		"gone, confirmed: reset":                {ResidentHost{Name: "h1", Phase: "Forgotten", Down: true, Confirmed: true}, ResetNow, ReasonVMReset},
		"live, same boot: nothing":              {ResidentHost{Name: "h1", Phase: "Live", Boot: "b1", ResidentBoot: "b1"}, ResetNone, ""},
		"live, placed before boot IDs: nothing": {ResidentHost{Name: "h1", Phase: "Live", Boot: "b1"}, ResetNone, ""},
		"live, new boot: reset":                 {ResidentHost{Name: "h1", Phase: "Live", Boot: "b2", ResidentBoot: "b1"}, ResetNow, ReasonHostRebooted},
		"pending, new boot: reset":              {ResidentHost{Name: "h1", Phase: "Pending", Boot: "b2", ResidentBoot: "b1"}, ResetNow, ReasonHostRebooted},
		"unreachable, new boot: hold":           {ResidentHost{Name: "h1", Phase: "Unreachable", Unreachable: true, Boot: "b2", ResidentBoot: "b1"}, ResetHold, ReasonHostUnreachable},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			d := ResetVerdict(tc.host, "Running")
			g.Expect(d.Action).To(Equal(tc.action))
			g.Expect(d.Reason).To(Equal(tc.reason))
			switch tc.reason {
			case "":
			case ReasonHostRebooted:
				g.Expect(d.Message).To(ContainSubstring("host h1 rebooted: boot b1, which the VM was placed on, ended (the host runs boot b2)"))
			default:
				g.Expect(d.Message).To(ContainSubstring("host h1 is " + tc.host.Phase))
			}
		})
	}
}
