package bmcsim_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poolkeeper/poolkeeper/internal/testutil/bmcsim"
)

// These tests speak raw HTTP rather than using the redfish client, so the
// emulator is checked against the protocol and not against the client.

const resetPath = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"

type request struct {
	method, path, body string
	contentType        string
	noAuth             bool
	password           string // overrides the default when set
	timeout            time.Duration
}

// do sends req and returns the status and the decoded JSON body (nil when
// the body is empty). It is safe to call from any goroutine.
func do(b *bmcsim.BMC, req request) (int, map[string]any, error) {
	timeout := req.timeout
	if timeout == 0 {
		timeout = 30 * time.Second // generous: behaviour, not speed, is under test
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	method := req.method
	if method == "" {
		method = http.MethodGet
	}
	r, err := http.NewRequestWithContext(ctx, method, b.URL()+req.path, strings.NewReader(req.body))
	if err != nil {
		return 0, nil, err
	}
	if !req.noAuth {
		password := bmcsim.DefaultPassword
		if req.password != "" {
			password = req.password
		}
		r.SetBasicAuth(bmcsim.DefaultUsername, password)
	}
	if req.contentType != "" {
		r.Header.Set("Content-Type", req.contentType)
	} else if method == http.MethodPost {
		r.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.Client().Do(r)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var body map[string]any
	if resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return resp.StatusCode, nil, fmt.Errorf("status %d with undecodable body: %w", resp.StatusCode, err)
		}
	}
	return resp.StatusCode, body, nil
}

// mustDo is do for requests expected to get an answer.
func mustDo(t *testing.T, b *bmcsim.BMC, req request) (int, map[string]any) {
	t.Helper()
	status, body, err := do(b, req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	return status, body
}

func reset(resetType string) request {
	return request{method: http.MethodPost, path: resetPath, body: `{"ResetType":"` + resetType + `"}`}
}

// messageID returns the first @Message.ExtendedInfo MessageId of an error
// body, or "" if body is not a Redfish error.
func messageID(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	infos, _ := e["@Message.ExtendedInfo"].([]any)
	if len(infos) == 0 {
		return ""
	}
	info, _ := infos[0].(map[string]any)
	id, _ := info["MessageId"].(string)
	return id
}

func TestResources(t *testing.T) {
	b := bmcsim.New(t, bmcsim.WithSystem("2", bmcsim.PowerOff), bmcsim.WithSystem("1", bmcsim.PowerOn))

	status, root := mustDo(t, b, request{path: "/redfish/v1/", noAuth: true})
	if status != http.StatusOK {
		t.Fatalf("service root status = %d; want 200 without credentials", status)
	}
	if got := root["Systems"].(map[string]any)["@odata.id"]; got != "/redfish/v1/Systems" {
		t.Errorf("service root Systems link = %v", got)
	}

	status, coll := mustDo(t, b, request{path: "/redfish/v1/Systems"})
	if status != http.StatusOK {
		t.Fatalf("collection status = %d", status)
	}
	members := coll["Members"].([]any)
	if len(members) != 2 || coll["Members@odata.count"] != float64(2) ||
		members[0].(map[string]any)["@odata.id"] != "/redfish/v1/Systems/1" ||
		members[1].(map[string]any)["@odata.id"] != "/redfish/v1/Systems/2" {
		t.Errorf("collection = %v; want systems 1 and 2 in order", coll)
	}

	status, sys := mustDo(t, b, request{path: "/redfish/v1/Systems/2"})
	if status != http.StatusOK || sys["Id"] != "2" || sys["PowerState"] != "Off" {
		t.Fatalf("system 2 = %d %v", status, sys)
	}
	action := sys["Actions"].(map[string]any)["#ComputerSystem.Reset"].(map[string]any)
	if action["target"] != "/redfish/v1/Systems/2/Actions/ComputerSystem.Reset" {
		t.Errorf("reset target = %v", action["target"])
	}
	allowed := action["ResetType@Redfish.AllowableValues"].([]any)
	for _, want := range []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart"} {
		found := false
		for _, v := range allowed {
			found = found || v == want
		}
		if !found {
			t.Errorf("ResetType %q not advertised in %v", want, allowed)
		}
	}
}

func TestAuthentication(t *testing.T) {
	b := bmcsim.New(t, bmcsim.WithCredentials("root", "calvin"))
	for _, req := range []request{
		{path: "/redfish/v1/Systems/1", noAuth: true},
		{path: "/redfish/v1/Systems/1", password: "wrong"},
		{method: http.MethodPost, path: resetPath, body: `{"ResetType":"ForceOff"}`, password: "wrong"},
		{path: "/redfish/v1/NoSuchThing", noAuth: true},
	} {
		status, body := mustDo(t, b, req)
		if status != http.StatusUnauthorized || messageID(body) != "Base.1.8.NoValidSession" {
			t.Errorf("%s %s = %d %v; want 401 with a Redfish error", req.method, req.path, status, body)
		}
	}
	if got := b.AuthFailures(); got != 4 {
		t.Errorf("AuthFailures = %d; want 4", got)
	}
	if got := b.ForceOffCount(bmcsim.DefaultSystemID); got != 0 {
		t.Errorf("ForceOffCount = %d; unauthenticated resets must not count", got)
	}
}

func TestUnknownResources(t *testing.T) {
	b := bmcsim.New(t)
	for _, req := range []request{
		{path: "/redfish/v1/Systems/9"},
		{method: http.MethodPost, path: "/redfish/v1/Systems/9/Actions/ComputerSystem.Reset", body: `{"ResetType":"ForceOff"}`},
		{path: "/redfish/v1/Chassis"},
	} {
		status, body := mustDo(t, b, req)
		if status != http.StatusNotFound || messageID(body) != "Base.1.8.ResourceMissingAtURI" {
			t.Errorf("%s %s = %d %v; want 404 with a Redfish error", req.method, req.path, status, body)
		}
	}
}

func TestResetTypes(t *testing.T) {
	tests := []struct {
		initial       bmcsim.PowerState
		resetType     string
		want          bmcsim.PowerState
		wantForceOffs int
	}{
		{initial: bmcsim.PowerOn, resetType: "ForceOff", want: bmcsim.PowerOff, wantForceOffs: 1},
		{initial: bmcsim.PowerOff, resetType: "ForceOff", want: bmcsim.PowerOff, wantForceOffs: 1},
		{initial: bmcsim.PowerOn, resetType: "GracefulShutdown", want: bmcsim.PowerOff},
		{initial: bmcsim.PowerOff, resetType: "On", want: bmcsim.PowerOn},
		{initial: bmcsim.PowerOn, resetType: "ForceRestart", want: bmcsim.PowerOn},
	}
	for _, tt := range tests {
		t.Run(string(tt.initial)+"/"+tt.resetType, func(t *testing.T) {
			b := bmcsim.New(t, bmcsim.WithSystem(bmcsim.DefaultSystemID, tt.initial))
			if status, body := mustDo(t, b, reset(tt.resetType)); status != http.StatusNoContent {
				t.Fatalf("reset = %d %v; want 204", status, body)
			}
			if got := b.PowerState(bmcsim.DefaultSystemID); got != tt.want {
				t.Errorf("PowerState = %q; want %q", got, tt.want)
			}
			if _, sys := mustDo(t, b, request{path: "/redfish/v1/Systems/1"}); sys["PowerState"] != string(tt.want) {
				t.Errorf("served PowerState = %v; want %q", sys["PowerState"], tt.want)
			}
			if got := b.ForceOffCount(bmcsim.DefaultSystemID); got != tt.wantForceOffs {
				t.Errorf("ForceOffCount = %d; want %d", got, tt.wantForceOffs)
			}
		})
	}
}

func TestResetRejectsBadRequests(t *testing.T) {
	tests := []struct {
		name       string
		req        request
		wantStatus int
		wantID     string
	}{
		{"unknown reset type", reset("Nmi"), http.StatusBadRequest, "Base.1.8.ActionParameterValueNotInList"},
		{"malformed JSON", request{method: http.MethodPost, path: resetPath, body: `{"ResetType":`}, http.StatusBadRequest, "Base.1.8.MalformedJSON"},
		{"missing ResetType", request{method: http.MethodPost, path: resetPath, body: `{}`}, http.StatusBadRequest, "Base.1.8.ActionParameterMissing"},
		{"not JSON content type", request{method: http.MethodPost, path: resetPath, body: `{"ResetType":"ForceOff"}`, contentType: "text/plain"},
			http.StatusUnsupportedMediaType, "Base.1.8.GeneralError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bmcsim.New(t)
			status, body := mustDo(t, b, tt.req)
			if status != tt.wantStatus || messageID(body) != tt.wantID {
				t.Errorf("reset = %d %v; want %d %s", status, body, tt.wantStatus, tt.wantID)
			}
			if got := b.PowerState(bmcsim.DefaultSystemID); got != bmcsim.PowerOn {
				t.Errorf("PowerState = %q; a rejected reset must not change it", got)
			}
		})
	}
}

func TestPowerOffDelay(t *testing.T) {
	b := bmcsim.New(t)
	b.SetPowerOffDelay(time.Hour) // far beyond the test, so PoweringOff is certain
	mustDo(t, b, reset("ForceOff"))
	if got := b.PowerState(bmcsim.DefaultSystemID); got != bmcsim.PoweringOff {
		t.Fatalf("PowerState = %q; want %q", got, bmcsim.PoweringOff)
	}
	mustDo(t, b, reset("ForceOff")) // a second press does not restart the shutdown
	if got := b.ForceOffCount(bmcsim.DefaultSystemID); got != 2 {
		t.Errorf("ForceOffCount = %d; want 2", got)
	}
	b.SetPowerState(bmcsim.DefaultSystemID, bmcsim.PowerOff)
	if got := b.PowerState(bmcsim.DefaultSystemID); got != bmcsim.PowerOff {
		t.Errorf("PowerState after SetPowerState = %q; want Off", got)
	}

	// A short delay does complete; poll with a generous deadline.
	b.SetPowerState(bmcsim.DefaultSystemID, bmcsim.PowerOn)
	b.SetPowerOffDelay(20 * time.Millisecond)
	mustDo(t, b, reset("ForceOff"))
	deadline := time.Now().Add(30 * time.Second)
	for b.PowerState(bmcsim.DefaultSystemID) != bmcsim.PowerOff {
		if time.Now().After(deadline) {
			t.Fatal("system never reached Off")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// PoweringOff set by a test stays until changed.
	b.SetPowerState("2", bmcsim.PoweringOff)
	if got := b.PowerState("2"); got != bmcsim.PoweringOff {
		t.Errorf("PowerState(2) = %q; want PoweringOff to stick", got)
	}
}

func TestIgnoreForceOff(t *testing.T) {
	b := bmcsim.New(t)
	b.SetIgnoreForceOff(true)
	if status, _ := mustDo(t, b, reset("ForceOff")); status != http.StatusNoContent {
		t.Fatalf("ForceOff status = %d; want 204", status)
	}
	if got := b.PowerState(bmcsim.DefaultSystemID); got != bmcsim.PowerOn {
		t.Errorf("PowerState = %q; want On", got)
	}
	if got := b.ForceOffCount(bmcsim.DefaultSystemID); got != 1 {
		t.Errorf("ForceOffCount = %d; want 1", got)
	}
}

func TestFailures(t *testing.T) {
	b := bmcsim.New(t)
	get := request{path: "/redfish/v1/Systems/1"}

	b.FailNext(2, http.StatusServiceUnavailable)
	for i, want := range []int{503, 503, 200} {
		status, body := mustDo(t, b, get)
		if status != want {
			t.Errorf("request %d after FailNext = %d; want %d", i, status, want)
		}
		if status != http.StatusOK && messageID(body) != "Base.1.8.GeneralError" {
			t.Errorf("injected failure body = %v; want a Redfish error", body)
		}
	}

	b.SetFailing(http.StatusInternalServerError)
	for range 3 {
		if status, _ := mustDo(t, b, reset("ForceOff")); status != http.StatusInternalServerError {
			t.Errorf("request while failing = %d; want 500", status)
		}
	}
	if got := b.ForceOffCount(bmcsim.DefaultSystemID); got != 0 {
		t.Errorf("ForceOffCount = %d; failed requests must not act", got)
	}
	b.ClearFailing()
	if status, _ := mustDo(t, b, get); status != http.StatusOK {
		t.Errorf("request after ClearFailing = %d; want 200", status)
	}
	if got := b.Requests(); got != 7 {
		t.Errorf("Requests = %d; want 7", got)
	}
}

func TestUnreachable(t *testing.T) {
	b := bmcsim.New(t)
	b.SetUnreachable(true)
	if _, _, err := do(b, request{path: "/redfish/v1/Systems/1"}); err == nil {
		t.Fatal("request to an unreachable BMC succeeded")
	}
	b.SetUnreachable(false)
	if status, _ := mustDo(t, b, request{path: "/redfish/v1/Systems/1"}); status != http.StatusOK {
		t.Errorf("status after SetUnreachable(false) = %d; want 200", status)
	}
}

func TestLatency(t *testing.T) {
	b := bmcsim.New(t)
	b.SetLatency(time.Minute)
	_, _, err := do(b, request{path: "/redfish/v1/Systems/1", timeout: 100 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request with latency = %v; want the client's deadline to expire", err)
	}
	b.SetLatency(0)
	if status, _ := mustDo(t, b, request{path: "/redfish/v1/Systems/1"}); status != http.StatusOK {
		t.Errorf("status after SetLatency(0) = %d; want 200", status)
	}
}

func TestCertificate(t *testing.T) {
	b := bmcsim.New(t)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.CertPool(), MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get(b.URL() + "/redfish/v1/")
	if err != nil {
		t.Fatalf("client with CertPool: %v", err)
	}
	_ = resp.Body.Close()
	var unknownAuthority x509.UnknownAuthorityError
	_, err = (&http.Client{}).Get(b.URL() + "/redfish/v1/")
	if !errors.As(err, &unknownAuthority) {
		t.Errorf("default client error = %v; want x509.UnknownAuthorityError", err)
	}
}

func TestStartAndClose(t *testing.T) {
	b := bmcsim.Start()
	b.SetLatency(time.Minute)
	errc := make(chan error, 1)
	go func() {
		resp, err := b.Client().Get(b.URL() + "/redfish/v1/")
		if err == nil {
			_ = resp.Body.Close()
		}
		errc <- err
	}()
	// Wait until the delayed request is in, so Close must end it.
	deadline := time.Now().Add(30 * time.Second)
	for b.Requests() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("request never reached the BMC")
		}
		time.Sleep(time.Millisecond)
	}
	b.Close() // must not wait out the latency
	b.Close() // and is idempotent
	if err := <-errc; err == nil {
		t.Error("delayed request got an answer; Close should drop it")
	}
	if _, err := b.Client().Get(b.URL() + "/redfish/v1/"); err == nil {
		t.Error("request after Close succeeded")
	}
}

// TestConcurrentUse is for the race detector: requests and fault controls
// from many goroutines at once.
func TestConcurrentUse(t *testing.T) {
	b := bmcsim.New(t)
	var wg sync.WaitGroup
	errs := make(chan error, 80)
	for i := range 8 {
		wg.Go(func() {
			req := request{path: "/redfish/v1/Systems/1"}
			if i%2 == 0 {
				req = reset("ForceOff")
			}
			for range 10 {
				if _, _, err := do(b, req); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			b.FailNext(1, http.StatusInternalServerError)
			b.SetIgnoreForceOff(i%2 == 0)
			b.SetPowerOffDelay(time.Duration(i) * time.Millisecond)
			b.SetPowerState(bmcsim.DefaultSystemID, bmcsim.PowerOn)
			b.AddSystem("extra", bmcsim.PowerOff)
			_ = b.PowerState(bmcsim.DefaultSystemID)
			_ = b.ForceOffCount(bmcsim.DefaultSystemID)
			_ = b.AuthFailures()
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("request failed: %v", err)
	}
	if got := b.Requests(); got != 80 {
		t.Errorf("Requests = %d; want 80", got)
	}
}
