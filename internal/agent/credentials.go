package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	certificatesv1 "k8s.io/api/certificates/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/certificate"
	"k8s.io/client-go/util/connrotation"
	"k8s.io/klog/v2"

	"github.com/poolkeeper/poolkeeper/internal/agent/identity"
)

// CertificatePairPrefix names the files of the certificate store in the
// certificate directory: poolkeeper-agent-client-current.pem (a symlink to
// the newest poolkeeper-agent-client-<time>.pem, certificate and key).
const CertificatePairPrefix = "poolkeeper-agent-client"

// rotationCheckPeriod is how often a rotation is looked for: the new
// certificate is used from the next check on.
const rotationCheckPeriod = 5 * time.Second

// CertificateOptions configures an agent's self-renewing client certificate.
type CertificateOptions struct {
	// Bootstrap reaches the API server with the bootstrap credential (a
	// bootstrap token or a ServiceAccount token). It is used to request the
	// first certificate, and again only when no valid certificate is left;
	// its server and CA are those of every request.
	Bootstrap *rest.Config
	// Dir keeps the private key and the certificates (CertificatePairPrefix).
	Dir string
	// Namespace and Host name the Host whose agent identity is requested.
	Namespace, Host string
	// Log receives the certificate manager's logs.
	Log logr.Logger
}

// Certificates is an agent's client certificate, renewed before it expires
// through a CertificateSigningRequest (signer kubernetes.io/kube-apiserver-client)
// that the operator approves.
type Certificates struct {
	manager certificate.Manager
	config  *rest.Config
	dialer  *connrotation.Dialer
	log     logr.Logger
}

// StartCertificates starts the certificate manager and waits, until ctx is
// done, for a valid certificate: the one in opts.Dir, or a new one requested
// with the bootstrap credential. The manager stops with ctx.
func StartCertificates(ctx context.Context, opts CertificateOptions) (*Certificates, error) {
	if opts.Bootstrap == nil || opts.Dir == "" || opts.Namespace == "" || opts.Host == "" {
		return nil, errors.New("agent certificates: Bootstrap, Dir, Namespace and Host are required")
	}
	log := opts.Log.WithName("certificates")
	store, err := certificate.NewFileStoreWithLogger(log, CertificatePairPrefix, opts.Dir, opts.Dir, "", "")
	if err != nil {
		return nil, fmt.Errorf("opening the certificate directory %s: %w", opts.Dir, err)
	}
	c := &Certificates{dialer: connrotation.NewDialer((&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext),
		log: log}
	if c.config, err = c.rotatingConfig(opts.Bootstrap); err != nil {
		return nil, err
	}
	mctx := klog.NewContext(ctx, log)
	c.manager, err = certificate.NewManager(&certificate.Config{
		// Renew with the certificate itself; fall back to the bootstrap
		// credential only when none is valid (first start, or expired).
		ClientsetFn: func(current *tls.Certificate) (kubernetes.Interface, error) {
			if current != nil {
				return kubernetes.NewForConfig(c.config)
			}
			return kubernetes.NewForConfig(opts.Bootstrap)
		},
		Template: &x509.CertificateRequest{Subject: pkix.Name{
			CommonName: identity.Username(opts.Namespace, opts.Host), Organization: []string{identity.Group}}},
		SignerName:              certificatesv1.KubeAPIServerClientSignerName,
		Usages:                  []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		CertificateStore:        store,
		CertificateRenewFailure: renewFailures{c},
		Name:                    "agent client",
		Ctx:                     &mctx,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the certificate manager: %w", err)
	}
	c.manager.Start()
	go c.closeOnRotation(ctx, rotationCheckPeriod)
	if c.manager.Current() == nil {
		log.Info("Waiting for a client certificate: a CertificateSigningRequest is sent with the bootstrap credential",
			"commonName", identity.Username(opts.Namespace, opts.Host))
	}
	if err := wait.PollUntilContextCancel(ctx, time.Second, true, func(context.Context) (bool, error) {
		return c.manager.Current() != nil, nil
	}); err != nil {
		return nil, fmt.Errorf("waiting for a client certificate: %w", err)
	}
	log.Info("Client certificate ready", certFields(c.manager.Current())...)
	return c, nil
}

// RESTConfig reaches the API server with the current certificate; a renewed
// certificate is used without a restart (connections made with the old one
// are closed as soon as it is replaced).
func (c *Certificates) RESTConfig() *rest.Config { return rest.CopyConfig(c.config) }

// Current is the certificate in use, nil once it has expired.
func (c *Certificates) Current() *x509.Certificate {
	if cert := c.manager.Current(); cert != nil {
		return cert.Leaf
	}
	return nil
}

// rotatingConfig is base without its credentials, authenticating with
// whatever certificate the manager holds at each TLS handshake.
func (c *Certificates) rotatingConfig(base *rest.Config) (*rest.Config, error) {
	anonymous := rest.AnonymousClientConfig(base)
	tlsConfig, err := rest.TLSConfigFor(anonymous)
	if err != nil {
		return nil, fmt.Errorf("the bootstrap kubeconfig's TLS settings: %w", err)
	}
	if tlsConfig == nil {
		return nil, errors.New("the bootstrap kubeconfig must reach the API server over https")
	}
	tlsConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if cert := c.manager.Current(); cert != nil {
			return cert, nil
		}
		return &tls.Certificate{}, nil // none valid: the API server refuses the request
	}
	anonymous.TLSClientConfig = rest.TLSClientConfig{}
	anonymous.Transport = utilnet.SetTransportDefaults(&http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     tlsConfig,
		MaxIdleConnsPerHost: 25,
		DialContext:         c.dialer.DialContext,
	})
	return anonymous, nil
}

// closeOnRotation closes every connection when the certificate changes, so
// that the next request shakes hands with the new one: an open connection
// would otherwise stay authenticated as the old certificate.
func (c *Certificates) closeOnRotation(ctx context.Context, period time.Duration) {
	last := c.manager.Current()
	wait.UntilWithContext(ctx, func(context.Context) {
		cur := c.manager.Current()
		if cur == last {
			return
		}
		last = cur
		if cur == nil {
			c.log.Error(nil, "Client certificate expired and not renewed: every request is refused until a new one is issued")
		} else {
			c.log.Info("Client certificate rotated; reconnecting with it", certFields(cur)...)
		}
		c.dialer.CloseAll()
	}, period)
}

func certFields(cert *tls.Certificate) []any {
	if cert == nil || cert.Leaf == nil {
		return nil
	}
	return []any{"subject", cert.Leaf.Subject.String(), "serial", cert.Leaf.SerialNumber.String(),
		"notAfter", cert.Leaf.NotAfter.UTC().Format(time.RFC3339)}
}

// renewFailures reports each failed renewal: the agent keeps its current
// certificate until it expires, then can no longer heartbeat and self-fences.
type renewFailures struct{ c *Certificates }

func (r renewFailures) Inc() {
	var fields []any
	if r.c.manager != nil {
		fields = certFields(r.c.manager.Current())
	}
	r.c.log.Error(nil, "Client certificate renewal failed; the current certificate stays in use until it expires, "+
		"then the heartbeat stops and the watchdog self-fences", fields...)
}
