package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
)

// Condition reasons a review ends with; they are written verbatim to the
// CSR's Approved or Denied condition and to the event about it.
const (
	// ReasonApproved: every check passed.
	ReasonApproved = "AgentIdentityVerified"
	// ReasonInvalidRequest: spec.request is no signed PEM CERTIFICATE REQUEST.
	ReasonInvalidRequest = "InvalidRequest"
	// ReasonSubjectNotAllowed: the subject is not exactly an agent identity.
	ReasonSubjectNotAllowed = "SubjectNotAllowed"
	// ReasonKeyNotAllowed: the public key is too weak or of an unknown type.
	ReasonKeyNotAllowed = "KeyNotAllowed"
	// ReasonUsagesNotAllowed: spec.usages asks for more than client auth.
	ReasonUsagesNotAllowed = "UsagesNotAllowed"
	// ReasonRequesterNotAllowed: the requester may not ask for this identity.
	ReasonRequesterNotAllowed = "RequesterNotAllowed"
	// ReasonHostNotFound: no Host of that name in that namespace.
	ReasonHostNotFound = "HostNotFound"
	// ReasonHostForgotten: the Host is forgotten or being deleted.
	ReasonHostForgotten = "HostForgotten"
)

// Request is what a review reads of a CertificateSigningRequest.
type Request struct {
	// SignerName is spec.signerName.
	SignerName string
	// Username and Groups are spec.username and spec.groups: who asked.
	Username string
	Groups   []string
	// Usages is spec.usages.
	Usages []certificatesv1.KeyUsage
	// PEM is spec.request.
	PEM []byte
}

// HostState is what the operator found of the Host a request names.
type HostState int

// Host states.
const (
	// HostMissing: no such Host.
	HostMissing HostState = iota
	// HostActive: the Host exists and is not being forgotten.
	HostActive
	// HostForgotten: spec.state Forgotten, or deletion requested.
	HostForgotten
)

// Verdict is the outcome of a review.
type Verdict struct {
	// Approve is true when the certificate may be issued; otherwise deny.
	Approve bool
	// Reason and Message go to the CSR's condition and event.
	Reason, Message string
}

// Claim returns the namespace and host whose agent identity req asks for,
// and whether it asks for an agent identity at all: a CN with UserPrefix or
// Group among the organizations. Requests that claim none are not ours to
// review.
func Claim(req Request) (namespace, host string, ours bool) {
	if req.SignerName != certificatesv1.KubeAPIServerClientSignerName {
		return "", "", false
	}
	csr, err := parse(req.PEM)
	if err != nil {
		return "", "", false
	}
	cn := csr.Subject.CommonName
	if !strings.HasPrefix(cn, UserPrefix) && !slices.Contains(csr.Subject.Organization, Group) {
		return "", "", false
	}
	namespace, host, _ = ParseUsername(cn)
	return namespace, host, true
}

// Review is the approval chain for a request that Claim found ours, given
// the state of the Host it names; the first check that fails denies it.
func Review(req Request, host HostState) Verdict {
	csr, err := parse(req.PEM)
	if err != nil {
		return deny(ReasonInvalidRequest, "spec.request: %v", err)
	}
	cn := csr.Subject.CommonName
	for _, check := range []func() (string, string){
		func() (string, string) { return checkSubject(csr) },
		func() (string, string) { return checkKey(csr) },
		func() (string, string) { return checkUsages(req.Usages) },
		func() (string, string) { return checkRequester(req, cn) },
	} {
		if reason, msg := check(); reason != "" {
			return deny(reason, "%s", msg)
		}
	}
	namespace, name, _ := ParseUsername(cn)
	switch host {
	case HostMissing:
		return deny(ReasonHostNotFound, "CN %q names Host %s/%s, which does not exist", cn, namespace, name)
	case HostForgotten:
		return deny(ReasonHostForgotten, "CN %q names Host %s/%s, which is forgotten or being deleted", cn, namespace, name)
	}
	return Verdict{Approve: true, Reason: ReasonApproved,
		Message: fmt.Sprintf("client certificate for the agent of Host %s/%s, requested by %s", namespace, name, req.Username)}
}

func deny(reason, format string, args ...any) Verdict {
	return Verdict{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

func parse(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("no PEM block of type CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	return csr, nil
}

// checkSubject: CN an agent user name, O exactly Group, nothing else named.
func checkSubject(csr *x509.CertificateRequest) (string, string) {
	cn := csr.Subject.CommonName
	if _, _, ok := ParseUsername(cn); !ok {
		return ReasonSubjectNotAllowed, fmt.Sprintf("CN %q is not %s<namespace>:<host>", cn, UserPrefix)
	}
	if !slices.Equal(csr.Subject.Organization, []string{Group}) {
		return ReasonSubjectNotAllowed, fmt.Sprintf("O %q must be exactly [%s]", csr.Subject.Organization, Group)
	}
	if len(csr.DNSNames)+len(csr.EmailAddresses)+len(csr.IPAddresses)+len(csr.URIs) > 0 {
		return ReasonSubjectNotAllowed, "a client certificate of an agent names no DNS name, email address, IP address or URI"
	}
	return "", ""
}

// checkKey: ECDSA P-256 or P-384, or RSA of at least 2048 bits.
func checkKey(csr *x509.CertificateRequest) (string, string) {
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return "", ""
		}
		return ReasonKeyNotAllowed, fmt.Sprintf("ECDSA curve %s: use P-256 or P-384", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return "", ""
		}
		return ReasonKeyNotAllowed, fmt.Sprintf("RSA key of %d bits: at least 2048", k.N.BitLen())
	}
	return ReasonKeyNotAllowed, fmt.Sprintf("public key algorithm %s: use ECDSA P-256/P-384 or RSA", csr.PublicKeyAlgorithm)
}

// checkUsages: client auth, with at most digital signature and key
// encipherment beside it.
func checkUsages(usages []certificatesv1.KeyUsage) (string, string) {
	allowed := []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth, certificatesv1.UsageDigitalSignature,
		certificatesv1.UsageKeyEncipherment}
	for _, u := range usages {
		if !slices.Contains(allowed, u) {
			return ReasonUsagesNotAllowed, fmt.Sprintf("spec.usages asks for %q: an agent certificate is for client auth only", u)
		}
	}
	if !slices.Contains(usages, certificatesv1.UsageClientAuth) {
		return ReasonUsagesNotAllowed, "spec.usages must include \"client auth\""
	}
	return "", ""
}

// checkRequester: the identity itself renewing, a bootstrap token of
// BootstrapGroup, or the host's own ServiceAccount.
func checkRequester(req Request, cn string) (string, string) {
	namespace, host, _ := ParseUsername(cn)
	switch {
	case req.Username == cn && slices.Contains(req.Groups, Group):
	case strings.HasPrefix(req.Username, "system:bootstrap:") && slices.Contains(req.Groups, BootstrapGroup):
	case req.Username == serviceAccountUsername(namespace, host):
	default:
		return ReasonRequesterNotAllowed, fmt.Sprintf(
			"%s may not request %q: only that identity itself, a bootstrap token of group %s or ServiceAccount %s may",
			req.Username, cn, BootstrapGroup, serviceAccountUsername(namespace, host))
	}
	return "", ""
}
