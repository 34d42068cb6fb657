// Package testutil starts the envtest control plane (a real etcd and
// kube-apiserver with poolkeeper's CRDs installed) for the project's tests.
package testutil
