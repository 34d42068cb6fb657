package redfish_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poolkeeper/poolkeeper/internal/redfish"
	"github.com/poolkeeper/poolkeeper/internal/testutil/bmcsim"
)

// Distinctive credentials so that "the error does not contain the password"
// cannot pass or fail by accident.
const (
	username      = "fence-operator"
	password      = "correct-horse-battery-staple"
	wrongPassword = "wrong-horse-battery-staple"
)

// patience bounds waits in tests; generous so a loaded CI machine is not a
// failure. Tests assert behaviour, never how long something took.
const patience = 30 * time.Second

func newBMC(t *testing.T, opts ...bmcsim.Option) *bmcsim.BMC {
	t.Helper()
	return bmcsim.New(t, append([]bmcsim.Option{bmcsim.WithCredentials(username, password)}, opts...)...)
}

// newClient returns a client for bmc's DefaultSystemID that trusts its
// certificate; mutate adjusts the configuration first.
func newClient(t *testing.T, bmc *bmcsim.BMC, mutate func(*redfish.Config)) *redfish.Client {
	t.Helper()
	cfg := redfish.Config{
		Endpoint:   bmc.URL(),
		SystemID:   bmcsim.DefaultSystemID,
		Username:   username,
		Password:   password,
		HTTPClient: bmc.Client(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := redfish.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return ctx
}

// assertNoSecrets fails if err's text holds a password or a basic-auth token.
func assertNoSecrets(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	for _, secret := range []string{
		password, wrongPassword,
		base64.StdEncoding.EncodeToString([]byte(username + ":" + password)),
		base64.StdEncoding.EncodeToString([]byte(username + ":" + wrongPassword)),
	} {
		if strings.Contains(msg, secret) {
			t.Errorf("error leaks a credential: %q", msg)
		}
	}
}

func TestNewValidatesConfig(t *testing.T) {
	valid := redfish.Config{Endpoint: "https://bmc.example:443", SystemID: "1"}
	tests := []struct {
		name    string
		mutate  func(*redfish.Config)
		wantErr string // substring; "" means success
	}{
		{name: "valid https", mutate: func(*redfish.Config) {}},
		{name: "valid http with trailing slash", mutate: func(c *redfish.Config) { c.Endpoint = "http://10.0.0.5/" }},
		{name: "empty endpoint", mutate: func(c *redfish.Config) { c.Endpoint = "" }, wantErr: "endpoint must not be empty"},
		{name: "unparsable endpoint", mutate: func(c *redfish.Config) { c.Endpoint = "https://bmc:port" }, wantErr: "not a valid URL"},
		{name: "wrong scheme", mutate: func(c *redfish.Config) { c.Endpoint = "ftp://bmc" }, wantErr: "must use http or https"},
		{name: "no scheme", mutate: func(c *redfish.Config) { c.Endpoint = "bmc.example" }, wantErr: "must use http or https"},
		{name: "no host", mutate: func(c *redfish.Config) { c.Endpoint = "https://" }, wantErr: "has no host"},
		{name: "path", mutate: func(c *redfish.Config) { c.Endpoint = "https://bmc/redfish/v1" }, wantErr: "without path"},
		{name: "query", mutate: func(c *redfish.Config) { c.Endpoint = "https://bmc/?x=1" }, wantErr: "without path, query"},
		{name: "credentials in endpoint", mutate: func(c *redfish.Config) { c.Endpoint = "https://root:" + password + "@bmc" }, wantErr: "must not contain credentials"},
		{name: "credentials in unparsable endpoint", mutate: func(c *redfish.Config) { c.Endpoint = "https://root:" + password + "@bmc:port" }, wantErr: "not a valid URL"},
		{name: "empty system ID", mutate: func(c *redfish.Config) { c.SystemID = "" }, wantErr: "system ID must not be empty"},
		{name: "blank system ID", mutate: func(c *redfish.Config) { c.SystemID = "  " }, wantErr: "system ID must not be empty"},
		{name: "negative timeout", mutate: func(c *redfish.Config) { c.Timeout = -time.Second }, wantErr: "timeout must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.mutate(&cfg)
			c, err := redfish.New(cfg)
			if tt.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("New() = %v, %v; want a client", c, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New() succeeded; want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New() error = %q; want it to contain %q", err, tt.wantErr)
			}
			assertNoSecrets(t, err)
		})
	}
}

func TestPowerState(t *testing.T) {
	tests := []struct {
		id    string
		state bmcsim.PowerState
		want  redfish.PowerState
	}{
		{id: "1", state: bmcsim.PowerOn, want: redfish.PowerOn},
		{id: "System.Embedded.1", state: bmcsim.PowerOff, want: redfish.PowerOff},
		{id: "node-a", state: bmcsim.PoweringOn, want: redfish.PoweringOn},
		{id: "node-b", state: bmcsim.PoweringOff, want: redfish.PoweringOff},
	}
	bmc := newBMC(t)
	for _, tt := range tests {
		bmc.AddSystem(tt.id, tt.state)
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			c := newClient(t, bmc, func(cfg *redfish.Config) { cfg.SystemID = tt.id })
			got, err := c.PowerState(testContext(t))
			if err != nil {
				t.Fatalf("PowerState: %v", err)
			}
			if got != tt.want {
				t.Errorf("PowerState = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestForceOff(t *testing.T) {
	tests := []struct {
		name      string
		initial   bmcsim.PowerState
		ignore    bool
		wantState bmcsim.PowerState
	}{
		{name: "running system powers off", initial: bmcsim.PowerOn, wantState: bmcsim.PowerOff},
		{name: "system already off is accepted", initial: bmcsim.PowerOff, wantState: bmcsim.PowerOff},
		{name: "firmware ignoring ForceOff still answers success", initial: bmcsim.PowerOn, ignore: true, wantState: bmcsim.PowerOn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bmc := newBMC(t, bmcsim.WithSystem(bmcsim.DefaultSystemID, tt.initial))
			bmc.SetIgnoreForceOff(tt.ignore)
			c := newClient(t, bmc, nil)
			if err := c.ForceOff(testContext(t)); err != nil {
				t.Fatalf("ForceOff: %v", err)
			}
			if got := bmc.PowerState(bmcsim.DefaultSystemID); got != tt.wantState {
				t.Errorf("emulated state = %q; want %q", got, tt.wantState)
			}
			if got := bmc.ForceOffCount(bmcsim.DefaultSystemID); got != 1 {
				t.Errorf("ForceOffCount = %d; want 1", got)
			}
		})
	}
}

func TestForceOffReportsPoweringOffUntilDelayPasses(t *testing.T) {
	bmc := newBMC(t)
	// A delay far beyond the test makes the intermediate state certain.
	bmc.SetPowerOffDelay(time.Hour)
	c := newClient(t, bmc, nil)
	ctx := testContext(t)
	if err := c.ForceOff(ctx); err != nil {
		t.Fatalf("ForceOff: %v", err)
	}
	if got, err := c.PowerState(ctx); err != nil || got != redfish.PoweringOff {
		t.Fatalf("PowerState = %q, %v; want %q", got, err, redfish.PoweringOff)
	}
}

func TestForceOffThenPollUntilOff(t *testing.T) {
	bmc := newBMC(t)
	bmc.SetPowerOffDelay(100 * time.Millisecond)
	c := newClient(t, bmc, nil)
	ctx := testContext(t)
	if err := c.ForceOff(ctx); err != nil {
		t.Fatalf("ForceOff: %v", err)
	}
	for {
		state, err := c.PowerState(ctx)
		if err != nil {
			t.Fatalf("PowerState: %v", err)
		}
		if state == redfish.PowerOff {
			break
		}
		if state != redfish.PoweringOff {
			t.Fatalf("PowerState = %q while powering off; want %q or %q", state, redfish.PoweringOff, redfish.PowerOff)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("system still %q after %s", state, patience)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if got := bmc.ForceOffCount(bmcsim.DefaultSystemID); got != 1 {
		t.Errorf("ForceOffCount = %d; want 1", got)
	}
}

func TestErrors(t *testing.T) {
	getPower := func(ctx context.Context, c *redfish.Client) error {
		_, err := c.PowerState(ctx)
		return err
	}
	forceOff := func(ctx context.Context, c *redfish.Client) error { return c.ForceOff(ctx) }

	tests := []struct {
		name          string
		setup         func(*bmcsim.BMC)
		mutate        func(*redfish.Config)
		call          func(context.Context, *redfish.Client) error
		wantIs        error // nil: no errors.Is check
		wantStatus    int   // 0: not a *StatusError
		wantTransient bool
		wantText      []string
	}{{
		name:       "wrong password",
		mutate:     func(c *redfish.Config) { c.Password = wrongPassword },
		call:       getPower,
		wantIs:     redfish.ErrUnauthorized,
		wantStatus: http.StatusUnauthorized,
		wantText:   []string{"GET /redfish/v1/Systems/1", "401", "Base.1.8.NoValidSession: There is no valid session"},
	}, {
		name:       "wrong password on ForceOff",
		mutate:     func(c *redfish.Config) { c.Password = wrongPassword },
		call:       forceOff,
		wantIs:     redfish.ErrUnauthorized,
		wantStatus: http.StatusUnauthorized,
		wantText:   []string{"POST /redfish/v1/Systems/1/Actions/ComputerSystem.Reset", "401"},
	}, {
		name:       "forbidden",
		setup:      func(b *bmcsim.BMC) { b.FailNext(1, http.StatusForbidden) },
		call:       forceOff,
		wantIs:     redfish.ErrUnauthorized,
		wantStatus: http.StatusForbidden,
	}, {
		name:       "unknown system",
		mutate:     func(c *redfish.Config) { c.SystemID = "no-such-system" },
		call:       getPower,
		wantIs:     redfish.ErrNotFound,
		wantStatus: http.StatusNotFound,
		wantText:   []string{"/redfish/v1/Systems/no-such-system", "404", "was not found"},
	}, {
		name:       "ForceOff on unknown system",
		mutate:     func(c *redfish.Config) { c.SystemID = "no-such-system" },
		call:       forceOff,
		wantIs:     redfish.ErrNotFound,
		wantStatus: http.StatusNotFound,
	}, {
		name:          "500 is transient",
		setup:         func(b *bmcsim.BMC) { b.FailNext(1, http.StatusInternalServerError) },
		call:          getPower,
		wantStatus:    http.StatusInternalServerError,
		wantTransient: true,
		wantText:      []string{"500", "injected fault"},
	}, {
		name:          "503 while failing is transient",
		setup:         func(b *bmcsim.BMC) { b.SetFailing(http.StatusServiceUnavailable) },
		call:          forceOff,
		wantStatus:    http.StatusServiceUnavailable,
		wantTransient: true,
	}, {
		name:       "400 is permanent",
		setup:      func(b *bmcsim.BMC) { b.FailNext(1, http.StatusBadRequest) },
		call:       forceOff,
		wantStatus: http.StatusBadRequest,
	}, {
		name:          "unreachable GET is transient",
		setup:         func(b *bmcsim.BMC) { b.SetUnreachable(true) },
		call:          getPower,
		wantTransient: true,
		wantText:      []string{"GET /redfish/v1/Systems/1"},
	}, {
		name:          "unreachable POST is transient",
		setup:         func(b *bmcsim.BMC) { b.SetUnreachable(true) },
		call:          forceOff,
		wantTransient: true,
	}, {
		name:          "latency beyond the per-request timeout",
		setup:         func(b *bmcsim.BMC) { b.SetLatency(time.Minute) },
		mutate:        func(c *redfish.Config) { c.Timeout = 100 * time.Millisecond },
		call:          getPower,
		wantIs:        context.DeadlineExceeded,
		wantTransient: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bmc := newBMC(t)
			if tt.setup != nil {
				tt.setup(bmc)
			}
			err := tt.call(testContext(t), newClient(t, bmc, tt.mutate))
			if err == nil {
				t.Fatal("call succeeded; want an error")
			}
			t.Logf("error: %v", err)
			assertNoSecrets(t, err)
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(err, %v) = false", tt.wantIs)
			}
			for _, other := range []error{redfish.ErrUnauthorized, redfish.ErrNotFound} {
				if other != tt.wantIs && errors.Is(err, other) {
					t.Errorf("errors.Is(err, %v) = true; want false", other)
				}
			}
			var statusErr *redfish.StatusError
			if gotStatus := errors.As(err, &statusErr); gotStatus != (tt.wantStatus != 0) {
				t.Errorf("errors.As(*StatusError) = %v; want %v", gotStatus, tt.wantStatus != 0)
			} else if gotStatus && statusErr.StatusCode != tt.wantStatus {
				t.Errorf("StatusCode = %d; want %d", statusErr.StatusCode, tt.wantStatus)
			}
			if got := redfish.IsTransient(err); got != tt.wantTransient {
				t.Errorf("IsTransient = %v; want %v", got, tt.wantTransient)
			}
			for _, text := range tt.wantText {
				if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(text)) {
					t.Errorf("error %q does not mention %q", err, text)
				}
			}
		})
	}
}

func TestWrongPasswordIsRecordedByBMC(t *testing.T) {
	bmc := newBMC(t)
	c := newClient(t, bmc, func(cfg *redfish.Config) { cfg.Password = wrongPassword })
	if _, err := c.PowerState(testContext(t)); !errors.Is(err, redfish.ErrUnauthorized) {
		t.Fatalf("PowerState error = %v; want ErrUnauthorized", err)
	}
	if got := bmc.AuthFailures(); got != 1 {
		t.Errorf("AuthFailures = %d; want 1", got)
	}
}

func TestRecoversAfterTransientFailures(t *testing.T) {
	bmc := newBMC(t)
	c := newClient(t, bmc, nil)
	ctx := testContext(t)
	bmc.FailNext(1, http.StatusInternalServerError)
	if _, err := c.PowerState(ctx); !redfish.IsTransient(err) {
		t.Fatalf("first PowerState error = %v; want a transient error", err)
	}
	if got, err := c.PowerState(ctx); err != nil || got != redfish.PowerOn {
		t.Fatalf("second PowerState = %q, %v; want %q", got, err, redfish.PowerOn)
	}

	bmc.SetUnreachable(true)
	if err := c.ForceOff(ctx); !redfish.IsTransient(err) {
		t.Fatalf("ForceOff while unreachable error = %v; want a transient error", err)
	}
	bmc.SetUnreachable(false)
	if err := c.ForceOff(ctx); err != nil {
		t.Fatalf("ForceOff after recovery: %v", err)
	}
	if got := bmc.PowerState(bmcsim.DefaultSystemID); got != bmcsim.PowerOff {
		t.Errorf("emulated state = %q; want %q", got, bmcsim.PowerOff)
	}
}

func TestCallerContext(t *testing.T) {
	t.Run("deadline shorter than the BMC's latency", func(t *testing.T) {
		bmc := newBMC(t)
		bmc.SetLatency(time.Minute)
		c := newClient(t, bmc, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := c.PowerState(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("PowerState error = %v; want context.DeadlineExceeded", err)
		}
		if !redfish.IsTransient(err) {
			t.Errorf("IsTransient(%v) = false; a timeout is worth retrying", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		bmc := newBMC(t)
		c := newClient(t, bmc, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := c.ForceOff(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ForceOff error = %v; want context.Canceled", err)
		}
		if redfish.IsTransient(err) {
			t.Errorf("IsTransient(%v) = true; the caller gave up, retrying is not its wish", err)
		}
		if got := bmc.ForceOffCount(bmcsim.DefaultSystemID); got != 0 {
			t.Errorf("ForceOffCount = %d; want 0", got)
		}
	})
}

func TestTLSVerification(t *testing.T) {
	bmc := newBMC(t)
	tests := []struct {
		name    string
		mutate  func(*redfish.Config)
		wantErr bool
	}{
		{name: "self-signed certificate is rejected by default", mutate: func(c *redfish.Config) { c.HTTPClient = nil }, wantErr: true},
		{name: "InsecureSkipVerify accepts it", mutate: func(c *redfish.Config) { c.HTTPClient, c.InsecureSkipVerify = nil, true }},
		{name: "emulator's HTTP client trusts it", mutate: func(c *redfish.Config) { c.HTTPClient = bmc.Client() }},
		{name: "client built from the emulator's CertPool trusts it", mutate: func(c *redfish.Config) {
			c.HTTPClient = &http.Client{Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: bmc.CertPool(), MinVersion: tls.VersionTLS12},
			}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, bmc, tt.mutate)
			state, err := c.PowerState(testContext(t))
			if !tt.wantErr {
				if err != nil || state != redfish.PowerOn {
					t.Fatalf("PowerState = %q, %v; want %q", state, err, redfish.PowerOn)
				}
				return
			}
			var verifyErr *tls.CertificateVerificationError
			if !errors.As(err, &verifyErr) {
				t.Fatalf("PowerState error = %v; want a *tls.CertificateVerificationError", err)
			}
			if redfish.IsTransient(err) {
				t.Errorf("IsTransient(%v) = true; an untrusted certificate is a configuration error", err)
			}
		})
	}
}

// TestRequests checks the wire format against a plain HTTP server, which
// also covers http endpoints.
func TestRequests(t *testing.T) {
	type seen struct {
		method, path, accept, odata, contentType, body string
		user, pass                                     string
		authOK                                         bool
	}
	var (
		mu       sync.Mutex
		requests []seen
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s := seen{method: r.Method, path: r.URL.EscapedPath(), accept: r.Header.Get("Accept"),
			odata: r.Header.Get("OData-Version"), contentType: r.Header.Get("Content-Type"), body: string(body)}
		s.user, s.pass, s.authOK = r.BasicAuth()
		mu.Lock()
		requests = append(requests, s)
		mu.Unlock()
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		_, _ = io.WriteString(w, `{"Id":"a/b","PowerState":"Paused"}`)
	}))
	t.Cleanup(srv.Close)

	c, err := redfish.New(redfish.Config{Endpoint: srv.URL, SystemID: "a/b", Username: username, Password: password})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := testContext(t)
	if got, err := c.PowerState(ctx); err != nil || got != "Paused" {
		t.Fatalf("PowerState = %q, %v; want unknown states passed through", got, err)
	}
	if err := c.ForceOff(ctx); err != nil {
		t.Fatalf("ForceOff with 202: %v", err)
	}

	want := []seen{
		{method: "GET", path: "/redfish/v1/Systems/a%2Fb", accept: "application/json", odata: "4.0"},
		{method: "POST", path: "/redfish/v1/Systems/a%2Fb/Actions/ComputerSystem.Reset", accept: "application/json",
			odata: "4.0", contentType: "application/json", body: `{"ResetType":"ForceOff"}`},
	}
	mu.Lock()
	defer mu.Unlock()
	if len(requests) != len(want) {
		t.Fatalf("got %d requests; want %d", len(requests), len(want))
	}
	for i, w := range want {
		w.user, w.pass, w.authOK = username, password, true
		if requests[i] != w {
			t.Errorf("request %d = %+v; want %+v", i, requests[i], w)
		}
	}
}

// TestErrorBodyIsRedactedAndBounded uses a BMC that echoes the credentials
// in a huge error body, the worst case for leaking them into conditions.
func TestErrorBodyIsRedactedAndBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pass, _ := r.BasicAuth()
		msg := "login with " + pass + " as " + r.Header.Get("Authorization") + " failed\n" + strings.Repeat("x", 10000)
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
			"code":                  "Base.1.8.GeneralError",
			"message":               "A general error has occurred.",
			"@Message.ExtendedInfo": []map[string]string{{"MessageId": "Vendor.1.0.Oops", "Message": msg}},
		}})
	}))
	t.Cleanup(srv.Close)

	c, err := redfish.New(redfish.Config{Endpoint: srv.URL, SystemID: "1", Username: username, Password: password})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	_, err = c.PowerState(testContext(t))
	if err == nil {
		t.Fatal("PowerState succeeded; want an error")
	}
	assertNoSecrets(t, err)
	msg := err.Error()
	for _, want := range []string{"status 500", "Vendor.1.0.Oops: login with [redacted] as Basic [redacted] failed"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans several lines: %q", msg)
	}
	if len(msg) > 1000 {
		t.Errorf("error is %d bytes long; want the BMC's message bounded", len(msg))
	}
}
