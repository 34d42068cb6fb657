package controllers_test

import (
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/poolkeeper/poolkeeper/controllers"
)

// TestCacheOptionsNamespaces: --namespace is one namespace or a
// comma-separated list; empty watches every namespace.
func TestCacheOptionsNamespaces(t *testing.T) {
	for name, tc := range map[string]struct {
		flag string
		want map[string]cache.Config
	}{
		"all namespaces": {flag: "", want: nil},
		"one":            {flag: "pools", want: map[string]cache.Config{"pools": {}}},
		"a list":         {flag: "pools-a,pools-b", want: map[string]cache.Config{"pools-a": {}, "pools-b": {}}},
		"spaces and empty items": {flag: " pools-a , ,pools-b,",
			want: map[string]cache.Config{"pools-a": {}, "pools-b": {}}},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			opts := controllers.CacheOptions(tc.flag)
			g.Expect(opts.DefaultNamespaces).To(Equal(tc.want))
			g.Expect(opts.ByObject).To(HaveLen(1), "the heartbeat Lease selector stays")
		})
	}
}
