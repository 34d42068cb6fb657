package redfish

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode"
)

var (
	// ErrUnauthorized matches (with errors.Is) a 401 or 403 answer: the BMC
	// rejected the credentials or the account lacks the privilege.
	ErrUnauthorized = errors.New("redfish: unauthorized")

	// ErrNotFound matches (with errors.Is) a 404 answer, which for this
	// client almost always means the configured SystemID does not exist.
	ErrNotFound = errors.New("redfish: not found")
)

// maxMessageLen bounds the BMC-provided text kept in a StatusError, in runes,
// so that a chatty or hostile BMC cannot flood conditions, events or logs.
const maxMessageLen = 256

// StatusError is an HTTP answer with a status the request did not expect.
type StatusError struct {
	// Method and Path identify the request, e.g. "GET" and
	// "/redfish/v1/Systems/1". Path never includes credentials.
	Method, Path string
	// StatusCode is the HTTP status the BMC answered with.
	StatusCode int
	// Message is the explanation from a Redfish error body (code, message
	// and extended info), bounded in length and with credentials removed.
	// It is empty when the body was not a Redfish error.
	Message string
}

// Error implements error.
func (e *StatusError) Error() string {
	s := fmt.Sprintf("redfish: %s %s: status %d", e.Method, e.Path, e.StatusCode)
	if text := http.StatusText(e.StatusCode); text != "" {
		s += " " + text
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is lets errors.Is match ErrUnauthorized and ErrNotFound by status code.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	}
	return false
}

// transient reports whether the BMC might give a better answer later: it is
// overloaded or restarting (5xx, which BMCs do while their firmware reboots),
// rate limiting (429) or timed out reading the request (408).
func (e *StatusError) transient() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests ||
		e.StatusCode == http.StatusRequestTimeout
}

// transportError is a request that got no HTTP answer at all.
type transportError struct {
	method, path string
	err          error
}

func (e *transportError) Error() string {
	return fmt.Sprintf("redfish: %s %s: no response: %v", e.method, e.path, e.err)
}

func (e *transportError) Unwrap() error { return e.err }

// transient reports whether trying again may succeed. Network failures and
// timeouts may; the caller cancelling does not, and neither does a TLS
// verification failure, which is a configuration problem that retrying only
// hides.
func (e *transportError) transient() bool {
	var (
		verifyErr    *tls.CertificateVerificationError
		recordErr    tls.RecordHeaderError
		authorityErr x509.UnknownAuthorityError
		hostnameErr  x509.HostnameError
		invalidErr   x509.CertificateInvalidError
	)
	switch {
	case errors.Is(e.err, context.Canceled),
		errors.As(e.err, &verifyErr), errors.As(e.err, &recordErr),
		errors.As(e.err, &authorityErr), errors.As(e.err, &hostnameErr),
		errors.As(e.err, &invalidErr):
		return false
	}
	return true
}

// IsTransient reports whether err, returned by this package, is worth
// retrying: a 5xx, 408 or 429 status, a network error, or a timeout
// (including the caller's context deadline). Authentication, not-found,
// TLS verification, cancellation and malformed-response errors are not.
func IsTransient(err error) bool {
	var statusErr *StatusError
	if errors.As(err, &statusErr) {
		return statusErr.transient()
	}
	var tErr *transportError
	if errors.As(err, &tErr) {
		return tErr.transient()
	}
	return false
}

// redfishError is the error body of DSP0266, section "Error responses".
type redfishError struct {
	Error struct {
		Code         string `json:"code"`
		Message      string `json:"message"`
		ExtendedInfo []struct {
			MessageID string `json:"MessageId"`
			Message   string `json:"Message"`
		} `json:"@Message.ExtendedInfo"`
	} `json:"error"`
}

// errorMessage extracts a one-line explanation from a Redfish error body, or
// "" if body is not one. Many BMCs answer with a generic code and message
// ("GeneralError ... see ExtendedInfo") and put the actual reason in the
// extended info, so that is preferred when present.
func errorMessage(body []byte) string {
	var rf redfishError
	if json.Unmarshal(body, &rf) != nil {
		return ""
	}
	var parts []string
	for _, info := range rf.Error.ExtendedInfo {
		if info.Message != "" {
			parts = append(parts, joinNonEmpty(": ", info.MessageID, info.Message))
		}
	}
	if len(parts) == 0 {
		return joinNonEmpty(": ", rf.Error.Code, rf.Error.Message)
	}
	return strings.Join(parts, "; ")
}

func joinNonEmpty(sep string, elems ...string) string {
	return strings.Join(slices.DeleteFunc(elems, func(s string) bool { return s == "" }), sep)
}

// sanitize makes BMC-provided text safe to put in an error: one line, at
// most maxMessageLen runes, and without any of the secrets.
func sanitize(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if runes := []rune(s); len(runes) > maxMessageLen {
		s = string(runes[:maxMessageLen]) + "..."
	}
	return s
}
