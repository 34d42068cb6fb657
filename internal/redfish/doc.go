// Package redfish is poolkeeper's minimal Redfish client for fencing a
// hypervisor host through its BMC (baseboard management controller).
//
// It owns exactly what fencing needs: reading a ComputerSystem's PowerState
// and sending the ComputerSystem.Reset action with ResetType ForceOff, over
// HTTP(S) with basic auth. Deciding when to fence, retrying and recording the
// outcome on the Host belong to the callers.
//
// Errors are built so that a controller can decide what to do without
// parsing strings: errors.Is(err, ErrUnauthorized) and errors.Is(err,
// ErrNotFound) mean the configuration is wrong and retrying will not help,
// IsTransient(err) means the BMC may answer if asked again, and *StatusError
// carries the HTTP status and the BMC's own explanation. No error or message
// produced by this package contains the configured password.
package redfish
