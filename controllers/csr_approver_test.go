package controllers_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/agent/identity"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// signedLifetime is the lifetime of the certificates the test's signer
// issues: short, so that the agent renews its certificate during the test.
const signedLifetime = 30 * time.Second

// TestAgentTLSBootstrapAndRotation is the hypervisor-host setup of the
// README: an agent with only a bootstrap token gets a client certificate for
// its Host (approved by the operator, signed by the cluster's signer), runs
// on it, renews it before it expires and keeps heartbeating with the new one
// without a restart. Requests for a missing Host or for another agent's
// identity are denied, and the admission policy keeps a certificate identity
// to its own Lease.
func TestAgentTLSBootstrapAndRotation(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	ca := newTestCA(t)
	admin, proxy := startTLSBootstrapControlPlane(t, ca)
	k := mustClient(t, admin)
	for _, f := range []string{"role.yaml", "policy.yaml", "certificates.yaml"} {
		applyFile(t, k, filepath.Join(testutil.RepoRoot(), "config", "agent", f))
	}
	go runSigner(ctx, t, kubernetes.NewForConfigOrDie(admin), ca)
	startCSRApprover(t, admin)

	ns := "tls-bootstrap"
	g.Expect(k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	pool := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}}
	pool.Spec.HA.Enabled, pool.Spec.HeartbeatTimeout = true, &metav1.Duration{Duration: 20 * time.Second}
	pool.Spec.Fencing.MaxConcurrent, pool.Spec.Fencing.MaxUnhealthyPercent = 1, 50
	g.Expect(k.Create(ctx, pool)).To(Succeed())
	for _, name := range []string{"h1", "h2"} {
		h := &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		h.Spec.PoolRef.Name, h.Spec.Address = "p", name+".example"
		h.Spec.Capacity.CPU.Set(4)
		h.Spec.Capacity.Memory.Set(8 << 30)
		g.Expect(k.Create(ctx, h)).To(Succeed())
	}
	g.Expect(k.Create(ctx, bootstrapTokenSecret("abcdef", "0123456789abcdef"))).To(Succeed())
	bootstrap := rest.AnonymousClientConfig(admin)
	bootstrap.Host, bootstrap.BearerToken = "https://"+proxy.Addr(), "abcdef.0123456789abcdef"

	// Bootstrap: the agent has nothing but the token.
	certs, err := agent.StartCertificates(ctx, agent.CertificateOptions{Bootstrap: bootstrap, Dir: t.TempDir(),
		Namespace: ns, Host: "h1", Log: ctrl.Log})
	g.Expect(err).NotTo(HaveOccurred())
	first := certs.Current()
	g.Expect(first.Subject.CommonName).To(Equal("poolkeeper:agent:tls-bootstrap:h1"))
	g.Expect(first.Subject.Organization).To(Equal([]string{identity.Group}))
	g.Expect(approvedRequesters(g, k, first.Subject.CommonName)).To(ConsistOf("system:bootstrap:abcdef"))

	cfg := certs.RESTConfig()
	a, err := agent.New(agent.Config{RESTConfig: cfg, Namespace: ns, Host: "h1", Interval: time.Second,
		Driver: agent.NewSimDriver(), Log: ctrl.Log})
	g.Expect(err).NotTo(HaveOccurred())
	done := make(chan error, 1)
	actx, stop := context.WithCancel(ctx)
	go func() { done <- a.Run(actx) }()
	t.Cleanup(func() { stop(); <-done })
	renewedAfter := func(at time.Time) func(g Gomega) {
		return func(g Gomega) {
			lease := &coordinationv1.Lease{}
			g.Expect(k.Get(ctx, key(ns, "h1"), lease)).To(Succeed())
			g.Expect(lease.Spec.RenewTime).NotTo(BeNil())
			g.Expect(lease.Spec.RenewTime.After(at)).To(BeTrue(), "the Lease was last renewed at %s", lease.Spec.RenewTime)
		}
	}
	g.Eventually(renewedAfter(time.Now()), "20s", "200ms").Should(Succeed(), "the agent heartbeats with its certificate")

	// Rotation: a new certificate, requested with the old one, before the old one expires.
	g.Eventually(func(g Gomega) {
		g.Expect(certs.Current().SerialNumber).NotTo(Equal(first.SerialNumber))
	}, signedLifetime, "200ms").Should(Succeed(), "the certificate was renewed before it expired")
	g.Expect(approvedRequesters(g, k, first.Subject.CommonName)).To(ConsistOf("system:bootstrap:abcdef", first.Subject.CommonName))
	// Once the first certificate has expired, drop every connection: each new
	// one must present the renewed certificate, which the running agent
	// picked up by itself.
	g.Eventually(func() bool { return time.Now().After(first.NotAfter) }, signedLifetime, "200ms").Should(BeTrue())
	proxy.Cut()
	proxy.Restore()
	g.Eventually(renewedAfter(time.Now()), "20s", "200ms").Should(Succeed(), "the agent heartbeats with its renewed certificate")
	g.Expect(done).NotTo(Receive(), "the agent keeps running")

	// Denied: a Host that does not exist; another agent's identity.
	g.Expect(requestCertificate(t, bootstrap, "poolkeeper:agent:tls-bootstrap:ghost")).To(Succeed())
	g.Expect(requestCertificate(t, cfg, "poolkeeper:agent:tls-bootstrap:h2")).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(deniedReasons(g, k, "poolkeeper:agent:tls-bootstrap:ghost")).To(ConsistOf(identity.ReasonHostNotFound))
		g.Expect(deniedReasons(g, k, "poolkeeper:agent:tls-bootstrap:h2")).To(ConsistOf(identity.ReasonRequesterNotAllowed))
		g.Expect(csrEventReasons(g, k)).To(ContainElements(identity.ReasonApproved, identity.ReasonHostNotFound,
			identity.ReasonRequesterNotAllowed))
	}, "20s", "200ms").Should(Succeed())

	// Admission: h1's certificate may not renew h2's Lease.
	h1 := mustClient(t, cfg)
	g.Eventually(func(g Gomega) {
		err := h1.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "h2"},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("h2/stolen")}})
		g.Expect(err).To(MatchError(And(ContainSubstring("the agent of host h1 may renew only its own Lease"), ContainSubstring("not h2"))))
	}, "20s", "200ms").Should(Succeed())
}

// startTLSBootstrapControlPlane starts a control plane of its own whose API
// server trusts ca for client certificates and accepts bootstrap tokens; it
// returns an admin config and a proxy in front of the API server.
func startTLSBootstrapControlPlane(t *testing.T, ca *testCA) (*rest.Config, *testutil.Proxy) {
	t.Helper()
	env, err := testutil.NewEnvironment()
	if err != nil {
		t.Fatal(err)
	}
	apiServer := env.ControlPlane.GetAPIServer()
	apiServer.Authn = ca
	apiServer.Configure().Set("enable-bootstrap-token-auth", "true")
	admin, err := env.Start()
	if err != nil {
		_ = env.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	u, err := url.Parse(admin.Host)
	if err != nil {
		t.Fatal(err)
	}
	return admin, testutil.NewProxy(t, u.Host)
}

func startCSRApprover(t *testing.T, cfg *rest.Config) {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: testutil.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		t.Fatal(err)
	}
	r := &controllers.CSRApproverReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("poolkeeper"), Clock: clock.RealClock{}}
	if err := r.SetupWithManager(mgr, controllers.Options{MaxConcurrentReconciles: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func mustClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: testutil.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// applyFile creates every object of a multi-document YAML file.
func applyFile(t *testing.T, c client.Client, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(data), "\n---") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := c.Create(context.Background(), obj); err != nil {
			t.Fatalf("%s: creating %s %s: %v", path, obj.GetKind(), obj.GetName(), err)
		}
	}
}

func bootstrapTokenSecret(id, secret string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "bootstrap-token-" + id},
		Type: corev1.SecretTypeBootstrapToken,
		StringData: map[string]string{"token-id": id, "token-secret": secret, "usage-bootstrap-authentication": "true",
			"auth-extra-groups": identity.BootstrapGroup}}
}

// requestCertificate sends, as cfg's user, a CSR for an agent identity.
func requestCertificate(t *testing.T, cfg *rest.Config, cn string) error {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader,
		&x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: []string{identity.Group}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{SignerName: certificatesv1.KubeAPIServerClientSignerName,
			Usages:  []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
			Request: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})}}
	return mustClient(t, cfg).Create(context.Background(), csr)
}

// csrsFor lists the CSRs whose request names cn as its subject.
func csrsFor(g Gomega, c client.Client, cn string) []certificatesv1.CertificateSigningRequest {
	list := &certificatesv1.CertificateSigningRequestList{}
	g.Expect(c.List(context.Background(), list)).To(Succeed())
	var out []certificatesv1.CertificateSigningRequest
	for _, csr := range list.Items {
		if req, err := parseCSR(csr.Spec.Request); err == nil && req.Subject.CommonName == cn {
			out = append(out, csr)
		}
	}
	return out
}

func approvedRequesters(g Gomega, c client.Client, cn string) []string {
	var who []string
	for _, csr := range csrsFor(g, c, cn) {
		if cond := csrCondition(csr, certificatesv1.CertificateApproved); cond != nil {
			g.Expect(cond.Reason).To(Equal(identity.ReasonApproved))
			who = append(who, csr.Spec.Username)
		}
	}
	return who
}

func deniedReasons(g Gomega, c client.Client, cn string) []string {
	var reasons []string
	for _, csr := range csrsFor(g, c, cn) {
		if cond := csrCondition(csr, certificatesv1.CertificateDenied); cond != nil {
			g.Expect(cond.Message).NotTo(BeEmpty())
			reasons = append(reasons, cond.Reason)
		}
	}
	return reasons
}

func csrCondition(csr certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequestCondition {
	for i := range csr.Status.Conditions {
		if csr.Status.Conditions[i].Type == t {
			return &csr.Status.Conditions[i]
		}
	}
	return nil
}

// csrEventReasons: the reasons of the events about CSRs (cluster-scoped
// objects' events are in namespace default).
func csrEventReasons(g Gomega, c client.Client) []string {
	list := &eventsv1.EventList{}
	g.Expect(c.List(context.Background(), list, client.InNamespace(metav1.NamespaceDefault))).To(Succeed())
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.Kind == "CertificateSigningRequest" {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

func parseCSR(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, os.ErrInvalid
	}
	return x509.ParseCertificateRequest(block.Bytes)
}

// runSigner stands in for kube-controller-manager's csrsigning controller:
// it signs approved kube-apiserver-client requests with ca, for
// signedLifetime. The operator itself never signs.
func runSigner(ctx context.Context, t *testing.T, cs kubernetes.Interface, ca *testCA) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		list, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for i := range list.Items {
			csr := &list.Items[i]
			if csr.Spec.SignerName != certificatesv1.KubeAPIServerClientSignerName || len(csr.Status.Certificate) > 0 ||
				csrCondition(*csr, certificatesv1.CertificateApproved) == nil {
				continue
			}
			req, err := parseCSR(csr.Spec.Request)
			if err != nil {
				t.Errorf("signer: CSR %s: %v", csr.Name, err)
				continue
			}
			csr.Status.Certificate = ca.sign(t, req.Subject, req.PublicKey, signedLifetime)
			_, _ = cs.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{})
		}
	}
}

// testCA is the API server's client CA in the TLS bootstrap test: an
// envtest Authn that provisions envtest's own users and signs the agents'
// certificates, so the API server trusts both.
type testCA struct {
	cert   *x509.Certificate
	key    crypto.Signer
	caFile string
}

var _ envtest.Authn = &testCA{}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "poolkeeper test client CA"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// Configure points the API server's --client-ca-file at this CA.
func (c *testCA) Configure(workDir string, args *envtest.Arguments) error {
	c.caFile = filepath.Join(workDir, "poolkeeper-test-client-ca.crt")
	args.Set("client-ca-file", c.caFile)
	return nil
}

// Start writes the CA file.
func (c *testCA) Start() error {
	return os.WriteFile(c.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw}), 0o600)
}

// AddUser gives envtest a client certificate for user.
func (c *testCA) AddUser(user envtest.User, base *rest.Config) (*rest.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(base)
	cfg.CertData = c.sign(nil, pkix.Name{CommonName: user.Name, Organization: user.Groups}, key.Public(), time.Hour)
	cfg.KeyData = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	return cfg, nil
}

// Stop does nothing: the files live in envtest's work directory.
func (c *testCA) Stop() error { return nil }

// sign issues a client certificate (PEM) for subject and pub.
func (c *testCA) sign(t *testing.T, subject pkix.Name, pub any, lifetime time.Duration) []byte {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err == nil {
		now := time.Now()
		tmpl := &x509.Certificate{SerialNumber: serial, Subject: subject, NotBefore: now.Add(-time.Second),
			NotAfter: now.Add(lifetime), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		var der []byte
		if der, err = x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key); err == nil {
			return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
	}
	if t != nil {
		t.Errorf("signing a certificate for %s: %v", subject.CommonName, err)
	}
	return nil
}
