package fencing

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
)

func armed(kind vpoolv1alpha1.WatchdogKind, device string, w time.Duration, boot string) *vpoolv1alpha1.WatchdogStatus {
	s := &vpoolv1alpha1.WatchdogStatus{Kind: kind, Device: device, BootID: boot}
	if w > 0 {
		s.Timeout = &metav1.Duration{Duration: w}
	}
	return s
}

// The evidence of an Agent fence names the deadline the safe time rests on:
// the watchdog armed for the boot counted fenced, with the latest moment it
// resets the host, or the agent process alone.
func TestAgentEvidence(t *testing.T) {
	const alone = "the safe time rests on the agent process alone"
	renewed := liveness.Observation{Known: true, LastSeen: t0, LastRenewal: t0}
	cases := map[string]struct {
		timeout  time.Duration
		hb       liveness.Observation
		boot     string
		watchdog *vpoolv1alpha1.WatchdogStatus
		want     []string
		not      []string
	}{
		"a device armed for the fenced boot, HA default timeout": {
			timeout: time.Minute, hb: renewed, boot: "b1", watchdog: armed(vpoolv1alpha1.WatchdogDevice, "/dev/watchdog", 15*time.Second, "b1"),
			want: []string{
				"lease last renewed at X = 2026-11-21T12:00:00Z",
				"the agent self-fences (stops every VM) at 2026-11-21T12:01:00Z (X + 1m0s)",
				"the safe time rests on its kernel watchdog /dev/watchdog (timeout 15s, boot b1), which resets the host by " +
					"2026-11-21T12:01:18.75Z at the latest (X + 1m0s + 5W/4), 11.25s before the safe time",
				"safe at 2026-11-21T12:01:30Z (X + 1m0s + 30s), counted fenced at 2026-11-21T12:01:30Z",
			},
			not: []string{alone},
		},
		"the emulator armed for the fenced boot": {
			timeout: 2 * time.Second, hb: renewed, boot: "b1", watchdog: armed(vpoolv1alpha1.WatchdogEmulated, "unix:/run/h1.sock", 500*time.Millisecond, "b1"),
			want: []string{
				"the safe time rests on its emulated watchdog unix:/run/h1.sock (timeout 500ms, boot b1), which resets the host by " +
					"2026-11-21T12:00:02.625Z at the latest",
				"375ms before the safe time", "safe at 2026-11-21T12:00:03Z",
			},
			not: []string{alone},
		},
		"--watchdog none for the fenced boot": {
			timeout: time.Minute, hb: renewed, boot: "b1", watchdog: armed(vpoolv1alpha1.WatchdogNone, "", 0, "b1"),
			want: []string{"its agent armed no watchdog for boot b1 (--watchdog none): " + alone, "safe at 2026-11-21T12:01:30Z"},
		},
		"no watchdog reported": {
			timeout: time.Minute, hb: renewed, boot: "b1",
			want: []string{"the host reports no watchdog: " + alone},
		},
		"a watchdog reported for another boot is not cited": {
			timeout: time.Minute, hb: renewed, boot: "b1", watchdog: armed(vpoolv1alpha1.WatchdogDevice, "/dev/watchdog", 15*time.Second, "b0"),
			want: []string{"the host reports a watchdog for boot b0 only, not for boot b1, the one counted fenced: " + alone},
			not:  []string{"/dev/watchdog", "resets the host"},
		},
		"no boot recorded when the fence began": {
			timeout: time.Minute, hb: renewed, watchdog: armed(vpoolv1alpha1.WatchdogDevice, "/dev/watchdog", 15*time.Second, "b0"),
			want: []string{"no boot was recorded when the fence began", alone},
			not:  []string{"resets the host"},
		},
		"a watchdog too coarse for the timeout resets after the safe time": {
			timeout: 2 * time.Second, hb: renewed, boot: "b1", watchdog: armed(vpoolv1alpha1.WatchdogDevice, "/dev/watchdog", time.Second, "b1"),
			want: []string{"its kernel watchdog /dev/watchdog (timeout 1s, boot b1) resets the host by 2026-11-21T12:00:03.25Z at the latest",
				"250ms after the safe time: until then " + alone},
		},
		"a driver that set a shorter timeout than asked: reset by W'/4 + W": {
			timeout: time.Minute, hb: renewed, boot: "b1", watchdog: armed(vpoolv1alpha1.WatchdogDevice, "/dev/watchdog", 10*time.Second, "b1"),
			want: []string{"(timeout 10s, boot b1), which resets the host by 2026-11-21T12:01:13.75Z at the latest (X + 1m0s + 15s/4 + W)",
				"16.25s before the safe time"},
		},
		"a longer deadline declared in the Lease counts": {
			timeout: time.Minute, hb: liveness.Observation{Known: true, LastSeen: t0, LastRenewal: t0, Declared: 90 * time.Second},
			boot: "b1", watchdog: armed(vpoolv1alpha1.WatchdogDevice, "/dev/watchdog", 15*time.Second, "b1"),
			want: []string{
				"self-fences (stops every VM) at 2026-11-21T12:01:30Z (X + 1m30s, the deadline it declared in its Lease)",
				"resets the host by 2026-11-21T12:01:48.75Z at the latest", "safe at 2026-11-21T12:02:00Z",
			},
		},
		"silence counted afresh after an outage": {
			timeout: time.Minute, hb: liveness.Observation{Known: true, LastSeen: t0, LastRenewal: t0.Add(-time.Hour)},
			boot: "b1", watchdog: armed(vpoolv1alpha1.WatchdogDevice, "/dev/watchdog", 15*time.Second, "b1"),
			want: []string{"silence counted afresh from X = 2026-11-21T12:00:00Z after an outage (the lease was last renewed at 2026-11-21T11:00:00Z)",
				"resets the host by 2026-11-21T12:01:18.75Z"},
		},
		"no renewal observed since the operator started": {
			timeout: time.Minute, hb: liveness.Observation{Known: true, LastSeen: t0}, boot: "b1",
			want: []string{"no lease renewal observed since X = 2026-11-21T12:00:00Z (when this operator started or first saw the lease)"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			clk := clocktesting.NewFakePassiveClock(tc.hb.LastSeen)
			in := HostInput{Phase: inFencing, Method: vpoolv1alpha1.FencingAgent, HAEnabled: true, Timeout: tc.timeout,
				Heartbeat: tc.hb, Watchdog: tc.watchdog, Guard: Check{Allowed: true, Reason: ReasonFencingAllowed},
				Fencing: &vpoolv1alpha1.FencingStatus{Method: vpoolv1alpha1.FencingAgent, BootID: tc.boot}}

			// Fencing until the safe time, Fenced with the evidence from then on.
			clk.SetTime(SafeAt(tc.hb, tc.timeout).Add(-time.Millisecond))
			in.Now = clk.Now()
			g.Expect(Next(in).Phase).To(Equal(inFencing))
			clk.SetTime(SafeAt(tc.hb, tc.timeout))
			in.Now = clk.Now()
			d := Next(in)
			g.Expect(d.Phase).To(Equal(fenced))
			g.Expect(d.Reason).To(Equal(ReasonAgentWatchdog))
			g.Expect(d.Message).To(Equal(AgentEvidence(in)))
			for _, w := range tc.want {
				g.Expect(d.Message).To(ContainSubstring(w))
			}
			for _, n := range tc.not {
				g.Expect(d.Message).NotTo(ContainSubstring(n))
			}
		})
	}
}
