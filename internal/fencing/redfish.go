package fencing

import (
	"time"
)

// BMCAction is the next thing to do with a host's BMC during a Redfish fence.
type BMCAction int

const (
	// BMCDone: the BMC reports the host off; nothing more to send.
	BMCDone BMCAction = iota
	// BMCPowerOff: record the request in status, then send ForceOff.
	BMCPowerOff
	// BMCWait: a ForceOff was sent recently; poll the power state again.
	BMCWait
)

const (
	// PowerOffRetryAfter is how long the operator waits for PowerState Off
	// after a ForceOff before it sends another.
	PowerOffRetryAfter = 30 * time.Second
	// PowerPollInterval is how often the power state is read while waiting.
	PowerPollInterval = time.Second
	// MaxBackoff caps the wait between failed BMC calls.
	MaxBackoff = 2 * time.Minute
)

// RedfishStep decides the next BMC action from the power state just read and
// when ForceOff was last requested. A host already off is never sent a
// second ForceOff.
func RedfishStep(off bool, lastRequest time.Time, now time.Time) (BMCAction, time.Duration) {
	switch {
	case off:
		return BMCDone, 0
	case lastRequest.IsZero() || now.Sub(lastRequest) >= PowerOffRetryAfter:
		return BMCPowerOff, PowerPollInterval
	default:
		return BMCWait, PowerPollInterval
	}
}

// Backoff is the wait after the given number of consecutive failed BMC calls:
// 1s, 2s, 4s, ... up to MaxBackoff.
func Backoff(attempts int32) time.Duration {
	if attempts < 1 {
		return time.Second
	}
	if attempts > 8 {
		return MaxBackoff
	}
	d := time.Second << (attempts - 1)
	if d > MaxBackoff {
		return MaxBackoff
	}
	return d
}
