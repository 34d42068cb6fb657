// Package identity names a host agent's client-certificate identity and
// decides whether a CertificateSigningRequest for one may be approved.
//
// An agent of Host <host> in namespace <ns> authenticates with a client
// certificate whose subject is CN "poolkeeper:agent:<ns>:<host>", O
// "poolkeeper:agents" (signer kubernetes.io/kube-apiserver-client). It gets
// its first certificate with a bootstrap credential and renews it with the
// certificate itself, as a kubelet does. Review is the approval chain the
// operator runs on every such request; it imports no client.
package identity
