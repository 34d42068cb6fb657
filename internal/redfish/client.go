package redfish

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// DefaultTimeout bounds one request when Config.Timeout is zero. BMCs are
// slow embedded web servers, but a fencing decision cannot wait forever.
const DefaultTimeout = 10 * time.Second

// maxBodyBytes caps how much of a response is read; a ComputerSystem or an
// error body is a few KiB.
const maxBodyBytes = 1 << 20

// Config says how to reach one ComputerSystem on one BMC.
type Config struct {
	// Endpoint is the BMC's base URL: scheme, host and optional port, such
	// as "https://bmc.example:443". It must not contain a path or
	// credentials. Plain http sends the credentials unencrypted.
	Endpoint string
	// SystemID is the ComputerSystem's Id under /redfish/v1/Systems, such as
	// "1" or "System.Embedded.1".
	SystemID string
	// Username and Password are sent with HTTP basic auth on every request.
	Username, Password string
	// InsecureSkipVerify accepts any BMC certificate. Many BMCs ship with
	// self-signed certificates, but without verification anyone on the
	// path can impersonate the BMC and collect the credentials.
	InsecureSkipVerify bool
	// RootCAs, when set, are the only CAs a BMC certificate may chain to (a
	// private CA); nil means the system's roots.
	RootCAs *x509.CertPool
	// Timeout bounds each request, including reading the answer. Zero means
	// DefaultTimeout.
	Timeout time.Duration
	// HTTPClient, when set, is used as is instead of a client built from
	// InsecureSkipVerify (which is then ignored); tests use it to trust an
	// emulator's certificate.
	HTTPClient *http.Client
}

// PowerState is a ComputerSystem's PowerState. BMCs may report values other
// than the constants below (for example "Paused"); they are returned as is.
type PowerState string

// The PowerState values fencing cares about.
const (
	PowerOn     PowerState = "On"
	PowerOff    PowerState = "Off"
	PoweringOn  PowerState = "PoweringOn"
	PoweringOff PowerState = "PoweringOff"
)

// Client talks to one ComputerSystem on one BMC. It is safe for concurrent
// use.
type Client struct {
	base       string // scheme://host[:port], no trailing slash
	systemPath string
	resetPath  string
	username   string
	password   string
	authToken  string // base64 of "username:password", redacted like the password
	timeout    time.Duration
	http       *http.Client
}

// New validates cfg and returns a Client. It does not contact the BMC.
func New(cfg Config) (*Client, error) {
	base, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(cfg.SystemID) == "" {
		return nil, errors.New("redfish: system ID must not be empty")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("redfish: timeout must not be negative, got %s", cfg.Timeout)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = &http.Client{
			Transport: &http.Transport{
				Proxy: http.ProxyFromEnvironment,
				TLSClientConfig: &tls.Config{
					MinVersion: tls.VersionTLS12,
					// Explicit opt-in for self-signed BMCs; see Config.
					InsecureSkipVerify: cfg.InsecureSkipVerify,
					RootCAs:            cfg.RootCAs,
				},
				MaxIdleConnsPerHost: 2,
				IdleConnTimeout:     90 * time.Second,
			},
			// Following a redirect could send the credentials to another
			// scheme or host; a redirecting BMC is a configuration error
			// that should surface as a status instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	systemPath := "/redfish/v1/Systems/" + url.PathEscape(cfg.SystemID)
	return &Client{
		base:       base,
		systemPath: systemPath,
		resetPath:  systemPath + "/Actions/ComputerSystem.Reset",
		username:   cfg.Username,
		password:   cfg.Password,
		authToken:  base64.StdEncoding.EncodeToString([]byte(cfg.Username + ":" + cfg.Password)),
		timeout:    timeout,
		http:       httpClient,
	}, nil
}

// parseEndpoint checks that raw is an http(s) base URL and returns it
// without a trailing slash. Userinfo is checked first and raw is never
// echoed when it might hold a password.
func parseEndpoint(raw string) (string, error) {
	if strings.TrimSpace(raw) == "" {
		return "", errors.New("redfish: endpoint must not be empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var urlErr *url.Error
		if strings.Contains(raw, "@") || !errors.As(err, &urlErr) {
			return "", errors.New("redfish: endpoint is not a valid URL")
		}
		return "", fmt.Errorf("redfish: endpoint is not a valid URL: %w", urlErr.Err)
	}
	if u.User != nil {
		return "", errors.New("redfish: endpoint must not contain credentials; set Username and Password instead")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("redfish: endpoint %q must use http or https", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("redfish: endpoint %q has no host", raw)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("redfish: endpoint %q must be a base URL without path, query or fragment, such as https://bmc.example:443", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

// PowerState reads the system's PowerState.
func (c *Client) PowerState(ctx context.Context) (PowerState, error) {
	body, err := c.do(ctx, http.MethodGet, c.systemPath, nil, http.StatusOK)
	if err != nil {
		return "", err
	}
	var system struct {
		PowerState PowerState `json:"PowerState"`
	}
	if err := json.Unmarshal(body, &system); err != nil {
		return "", fmt.Errorf("redfish: GET %s: decode ComputerSystem: %w", c.systemPath, err)
	}
	if system.PowerState == "" {
		return "", fmt.Errorf("redfish: GET %s: ComputerSystem has no PowerState", c.systemPath)
	}
	return system.PowerState, nil
}

// ForceOff asks the BMC to cut the system's power immediately. Success means
// the BMC accepted the request, not that the system is off: the state may
// stay PoweringOff for a while, so callers confirm with PowerState. Some BMCs
// also reject ForceOff on a system that is already off, so read PowerState
// rather than treating every error as "still running".
func (c *Client) ForceOff(ctx context.Context) error {
	reset := struct {
		ResetType string `json:"ResetType"`
	}{ResetType: "ForceOff"}
	_, err := c.do(ctx, http.MethodPost, c.resetPath, reset,
		http.StatusOK, http.StatusAccepted, http.StatusNoContent)
	return err
}

// do sends one request and returns the body of an answer whose status is in
// want. The timeout covers reading the body, which is why it is read here.
func (c *Client) do(ctx context.Context, method, path string, payload any, want ...int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var reqBody io.Reader
	if payload != nil {
		data, err := json.Marshal(payload)
		if err != nil {
			return nil, fmt.Errorf("redfish: %s %s: encode request: %w", method, path, err)
		}
		reqBody = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, reqBody)
	if err != nil {
		return nil, fmt.Errorf("redfish: %s %s: build request: %w", method, path, err)
	}
	req.SetBasicAuth(c.username, c.password)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-Version", "4.0")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.http.Do(req)
	if err != nil {
		// *url.Error repeats the whole URL; the method and path are enough
		// next to the underlying network, TLS or context error.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return nil, &transportError{method: method, path: path, err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))

	if !slices.Contains(want, resp.StatusCode) {
		msg := errorMessage(body)
		if loc := resp.Header.Get("Location"); msg == "" && loc != "" && resp.StatusCode/100 == 3 {
			msg = "redirected to " + loc + "; point the endpoint there instead"
		}
		return nil, &StatusError{
			Method:     method,
			Path:       path,
			StatusCode: resp.StatusCode,
			Message:    sanitize(msg, c.password, c.authToken),
		}
	}
	if readErr != nil {
		return nil, &transportError{method: method, path: path, err: readErr}
	}
	return body, nil
}
