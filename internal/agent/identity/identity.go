package identity

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	// UserPrefix starts the user name (the certificate's CN) of every agent
	// certificate: UserPrefix + "<namespace>:<host>".
	UserPrefix = "poolkeeper:agent:"
	// Group is the certificate's only organization (O): the group the
	// agents' RBAC binds.
	Group = "poolkeeper:agents"
	// BootstrapGroup is the extra group of the bootstrap tokens that may
	// request agent certificates (a bootstrap token Secret's
	// auth-extra-groups).
	BootstrapGroup = "system:bootstrappers:poolkeeper-agents"
	// ServiceAccountPrefix starts the name of a host's own ServiceAccount,
	// poolkeeper-agent-<host>, which may also request that host's certificate.
	ServiceAccountPrefix = "poolkeeper-agent-"
)

// Username is the user name, and the certificate's CN, of the agent of Host
// host in namespace namespace.
func Username(namespace, host string) string {
	return UserPrefix + namespace + ":" + host
}

// ParseUsername returns the namespace and host of an agent user name, and
// false when name is not one (both parts must be valid object names).
func ParseUsername(name string) (namespace, host string, ok bool) {
	rest, found := strings.CutPrefix(name, UserPrefix)
	if !found {
		return "", "", false
	}
	namespace, host, found = strings.Cut(rest, ":")
	if !found || len(validation.IsDNS1123Label(namespace)) > 0 || len(validation.IsDNS1123Subdomain(host)) > 0 {
		return "", "", false
	}
	return namespace, host, true
}

// serviceAccountUsername is the user name of host's own ServiceAccount.
func serviceAccountUsername(namespace, host string) string {
	return "system:serviceaccount:" + namespace + ":" + ServiceAccountPrefix + host
}
