package bmcsim

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// PowerState is a ComputerSystem's Redfish PowerState.
type PowerState string

// The PowerState values the emulator produces.
const (
	PowerOn     PowerState = "On"
	PowerOff    PowerState = "Off"
	PoweringOn  PowerState = "PoweringOn"
	PoweringOff PowerState = "PoweringOff"
)

// Defaults used when no option overrides them.
const (
	DefaultUsername = "admin"
	DefaultPassword = "password"
	// DefaultSystemID is the one system, powered On, that a BMC started
	// without WithSystem has.
	DefaultSystemID = "1"
)

// Option configures a BMC before it starts.
type Option func(*BMC)

// WithCredentials sets the basic-auth username and password the BMC accepts.
func WithCredentials(username, password string) Option {
	return func(b *BMC) { b.username, b.password = username, password }
}

// WithSystem adds a system; when any is given, DefaultSystemID is not added.
func WithSystem(id string, state PowerState) Option {
	return func(b *BMC) { b.systems[id] = &system{state: state} }
}

// system is one emulated ComputerSystem.
type system struct {
	state PowerState
	// offAt is when a PoweringOff system reaches Off; zero means never
	// (a test set PoweringOff explicitly). Evaluated lazily on read, so no
	// timers or goroutines outlive the BMC.
	offAt     time.Time
	forceOffs int
}

// current returns the state at now, completing a due power-off.
func (s *system) current(now time.Time) PowerState {
	if s.state == PoweringOff && !s.offAt.IsZero() && !now.Before(s.offAt) {
		s.state, s.offAt = PowerOff, time.Time{}
	}
	return s.state
}

// BMC is a running emulated BMC. Create it with New or Start.
type BMC struct {
	srv       *httptest.Server
	done      chan struct{} // closed by Close to end delayed responses
	closeOnce sync.Once

	mu             sync.Mutex
	username       string
	password       string
	systems        map[string]*system
	offDelay       time.Duration
	latency        time.Duration
	failNext       int
	failNextStatus int
	failing        int // status every request fails with; 0 when not failing
	unreachable    bool
	ignoreForceOff bool
	requests       int
	authFailures   int
}

// New starts a BMC and closes it when t's test ends.
func New(t testing.TB, opts ...Option) *BMC {
	t.Helper()
	b := Start(opts...)
	t.Cleanup(b.Close)
	return b
}

// Start starts a BMC outside of a test; the caller must Close it.
func Start(opts ...Option) *BMC {
	b := &BMC{
		username: DefaultUsername,
		password: DefaultPassword,
		systems:  map[string]*system{},
		done:     make(chan struct{}),
	}
	for _, opt := range opts {
		opt(b)
	}
	if len(b.systems) == 0 {
		b.systems[DefaultSystemID] = &system{state: PowerOn}
	}
	// Like httptest.NewTLSServer, but with the server's error log silenced
	// before it starts: TLS handshake failures are expected in tests that
	// check certificate verification and would only add noise.
	b.srv = httptest.NewUnstartedServer(b.handler())
	b.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	b.srv.StartTLS()
	return b
}

// Close stops the BMC, ending any delayed responses first. It is safe to
// call more than once.
func (b *BMC) Close() {
	b.closeOnce.Do(func() {
		close(b.done)
		b.srv.Close()
	})
}

// URL returns the base URL, such as "https://127.0.0.1:41234".
func (b *BMC) URL() string { return b.srv.URL }

// Client returns an HTTP client that trusts the BMC's certificate.
func (b *BMC) Client() *http.Client { return b.srv.Client() }

// CertificatePEM is the BMC's self-signed certificate, PEM-encoded: what a
// private CA bundle holds.
func (b *BMC) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.srv.Certificate().Raw})
}

// CertPool returns a pool holding the BMC's self-signed certificate, for
// clients that build their own TLS configuration.
func (b *BMC) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(b.srv.Certificate())
	return pool
}

// AddSystem adds a system, or replaces one with the same id, in state.
func (b *BMC) AddSystem(id string, state PowerState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.systems[id] = &system{state: state}
}

// SetPowerState sets a system's state, cancelling any pending power-off and
// keeping its ForceOff count. It adds the system if it does not exist.
func (b *BMC) SetPowerState(id string, state PowerState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.systems[id]; ok {
		s.state, s.offAt = state, time.Time{}
		return
	}
	b.systems[id] = &system{state: state}
}

// PowerState returns a system's current state, or "" if it does not exist.
func (b *BMC) PowerState(id string) PowerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.systems[id]; ok {
		return s.current(time.Now())
	}
	return ""
}

// ForceOffCount returns how many ForceOff resets the system accepted,
// including ones while it was already off or ignored by SetIgnoreForceOff.
func (b *BMC) ForceOffCount(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.systems[id]; ok {
		return s.forceOffs
	}
	return 0
}

// Requests returns how many requests arrived, whatever their outcome.
func (b *BMC) Requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests
}

// AuthFailures returns how many requests were rejected with 401 for missing
// or wrong credentials.
func (b *BMC) AuthFailures() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.authFailures
}

// SetPowerOffDelay makes ForceOff and GracefulShutdown leave a system
// PoweringOff for d before it is Off, as real hardware does. It applies to
// resets accepted afterwards. Zero (the default) powers off at once.
func (b *BMC) SetPowerOffDelay(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.offDelay = d
}

// SetLatency delays every later response by d, or until the client gives up
// or the BMC closes.
func (b *BMC) SetLatency(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.latency = d
}

// FailNext makes the next n requests answer status with a Redfish error
// body, replacing any earlier FailNext. n <= 0 cancels it.
func (b *BMC) FailNext(n, status int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failNext, b.failNextStatus = max(n, 0), status
}

// SetFailing makes every request answer status with a Redfish error body
// until ClearFailing.
func (b *BMC) SetFailing(status int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failing = status
}

// ClearFailing ends SetFailing.
func (b *BMC) ClearFailing() { b.SetFailing(0) }

// SetUnreachable makes the BMC close every connection without answering, so
// clients see a network error, until called with false.
func (b *BMC) SetUnreachable(unreachable bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.unreachable = unreachable
}

// SetIgnoreForceOff makes the BMC accept (and count) ForceOff but leave the
// system's power as it is, like firmware that acknowledges and does nothing.
func (b *BMC) SetIgnoreForceOff(ignore bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ignoreForceOff = ignore
}
