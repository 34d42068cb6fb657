package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"

	. "github.com/onsi/gomega"
	certificatesv1 "k8s.io/api/certificates/v1"
)

func csrPEM(t *testing.T, key crypto.Signer, tmpl x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestReview(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	agent := pkix.Name{CommonName: "poolkeeper:agent:ns1:xen-1", Organization: []string{Group}}
	clientAuth := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	bootstrap := func(r *Request) {
		r.Username, r.Groups = "system:bootstrap:abcdef", []string{BootstrapGroup, "system:authenticated"}
	}

	tests := map[string]struct {
		key    crypto.Signer
		tmpl   x509.CertificateRequest
		mutate func(*Request)
		host   HostState
		reason string
	}{
		"bootstrap token, existing host": {host: HostActive, reason: ReasonApproved},
		"renewal by the identity itself": {host: HostActive, reason: ReasonApproved, mutate: func(r *Request) {
			r.Username, r.Groups = "poolkeeper:agent:ns1:xen-1", []string{Group, "system:authenticated"}
		}},
		"the host's own ServiceAccount": {host: HostActive, reason: ReasonApproved, mutate: func(r *Request) {
			r.Username, r.Groups = "system:serviceaccount:ns1:poolkeeper-agent-xen-1", nil
		}},
		"RSA 2048":            {key: mustRSA(t, 2048), host: HostActive, reason: ReasonApproved},
		"host does not exist": {host: HostMissing, reason: ReasonHostNotFound},
		"host forgotten":      {host: HostForgotten, reason: ReasonHostForgotten},
		"another agent's identity": {host: HostActive, reason: ReasonRequesterNotAllowed, mutate: func(r *Request) {
			r.Username, r.Groups = "poolkeeper:agent:ns1:xen-2", []string{Group}
		}},
		"another host's ServiceAccount": {host: HostActive, reason: ReasonRequesterNotAllowed, mutate: func(r *Request) {
			r.Username = "system:serviceaccount:ns1:poolkeeper-agent-xen-2"
		}},
		"the host's ServiceAccount name in another namespace": {host: HostActive, reason: ReasonRequesterNotAllowed,
			mutate: func(r *Request) { r.Username = "system:serviceaccount:ns2:poolkeeper-agent-xen-1" }},
		"a kubelet's bootstrap token": {host: HostActive, reason: ReasonRequesterNotAllowed, mutate: func(r *Request) {
			r.Groups = []string{"system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token"}
		}},
		"an extra organization": {host: HostActive, reason: ReasonSubjectNotAllowed,
			tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: agent.CommonName, Organization: []string{Group, "system:masters"}}}},
		"no organization": {host: HostActive, reason: ReasonSubjectNotAllowed,
			tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: agent.CommonName}}},
		"CN without host": {host: HostActive, reason: ReasonSubjectNotAllowed,
			tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: "poolkeeper:agent:ns1", Organization: []string{Group}}}},
		"a DNS name": {host: HostActive, reason: ReasonSubjectNotAllowed,
			tmpl: x509.CertificateRequest{Subject: agent, DNSNames: []string{"xen-1.example"}}},
		"server auth usage": {host: HostActive, reason: ReasonUsagesNotAllowed, mutate: func(r *Request) {
			r.Usages = append(r.Usages, certificatesv1.UsageServerAuth)
		}},
		"no client auth usage": {host: HostActive, reason: ReasonUsagesNotAllowed, mutate: func(r *Request) {
			r.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature}
		}},
		"RSA 1024":          {key: rsa1024, host: HostActive, reason: ReasonKeyNotAllowed},
		"ECDSA P-224":       {key: p224, host: HostActive, reason: ReasonKeyNotAllowed},
		"Ed25519":           {key: ed, host: HostActive, reason: ReasonKeyNotAllowed},
		"not a PEM request": {host: HostActive, reason: ReasonInvalidRequest, mutate: func(r *Request) { r.PEM = []byte("junk") }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			key := tc.key
			if key == nil {
				key = p256
			}
			tmpl := tc.tmpl
			if tmpl.Subject.CommonName == "" {
				tmpl.Subject = agent
			}
			req := Request{SignerName: certificatesv1.KubeAPIServerClientSignerName, Usages: clientAuth, PEM: csrPEM(t, key, tmpl)}
			bootstrap(&req)
			if tc.mutate != nil {
				tc.mutate(&req)
			}
			v := Review(req, tc.host)
			g.Expect(v.Reason).To(Equal(tc.reason), v.Message)
			g.Expect(v.Approve).To(Equal(tc.reason == ReasonApproved))
			g.Expect(v.Message).NotTo(BeEmpty())
		})
	}
}

func mustRSA(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestClaim(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	req := func(signer string, subject pkix.Name) Request {
		return Request{SignerName: signer, PEM: csrPEM(t, key, x509.CertificateRequest{Subject: subject})}
	}
	client := certificatesv1.KubeAPIServerClientSignerName
	tests := map[string]struct {
		req             Request
		ours            bool
		namespace, host string
	}{
		"an agent identity": {req: req(client, pkix.Name{CommonName: "poolkeeper:agent:ns1:xen-1", Organization: []string{Group}}),
			ours: true, namespace: "ns1", host: "xen-1"},
		"our group under another CN": {req: req(client, pkix.Name{CommonName: "admin", Organization: []string{Group}}), ours: true},
		"a kubelet's client certificate": {req: req(certificatesv1.KubeAPIServerClientKubeletSignerName,
			pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes"}})},
		"someone else's client certificate": {req: req(client, pkix.Name{CommonName: "jane", Organization: []string{"devs"}})},
		"our CN for another signer": {req: req("example.com/signer",
			pkix.Name{CommonName: "poolkeeper:agent:ns1:xen-1", Organization: []string{Group}})},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			ns, host, ours := Claim(tc.req)
			g.Expect(ours).To(Equal(tc.ours))
			g.Expect(ns).To(Equal(tc.namespace))
			g.Expect(host).To(Equal(tc.host))
		})
	}
}
