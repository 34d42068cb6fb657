package controllers

import (
	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// bootFenced reports whether h, as the cache shows it, is Fenced with boot
// as the boot it fenced. The cache may lag, but only behind the truth: that
// boot was fenced, so nothing placed on it or locked for it runs any more.
// Whatever was placed or locked anew since carries another boot ID, and a
// write made from an older view of the VM or VDI fails on its
// resourceVersion. Without a boot ID to match, callers ask the API server.
func bootFenced(h *vpoolv1alpha1.Host, boot string) bool {
	return h != nil && boot != "" && h.Status.Phase == vpoolv1alpha1.HostPhaseFenced && h.Status.Fencing != nil &&
		h.Status.Fencing.BootID == boot
}
