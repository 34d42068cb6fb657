// Package bmcsim is a Redfish BMC emulator for tests and e2e runs. It serves
// the resources poolkeeper's fencing uses (ServiceRoot, the Systems
// collection, ComputerSystem and its Reset action) over TLS with basic auth,
// and lets a test inject the faults real BMCs show: slow answers, error
// statuses, dropped connections, a slow or ignored power-off.
//
// It deliberately shares no code or types with the redfish client package,
// so a misunderstanding of the protocol in one cannot hide the same
// misunderstanding in the other.
//
// Every method is safe for concurrent use, including while requests are
// being served.
package bmcsim
