package controllers

import (
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// onChange passes deletions and the updates for which changed(old, new)
// holds; creations and generic events do not pass. Callers that care about
// creations set CreateFunc on the result.
func onChange[T client.Object](changed func(o, n T) bool) predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, okOld := e.ObjectOld.(T)
			n, okNew := e.ObjectNew.(T)
			return okOld && okNew && changed(o, n)
		},
	}
}

// phaseChanged passes a Host's phase changes and deletion.
func phaseChanged() predicate.Funcs {
	return onChange(func(o, n *vpoolv1alpha1.Host) bool { return o.Status.Phase != n.Status.Phase })
}

// residencyOfHostChanged passes what the VMs resident on a Host are judged
// by: its phase, and the boot it reports (a new boot, even while Live, runs
// none of the VMs placed on the one before: HostRebooted).
func residencyOfHostChanged() predicate.Funcs {
	return onChange(func(o, n *vpoolv1alpha1.Host) bool {
		return o.Status.Phase != n.Status.Phase || o.Status.BootID != n.Status.BootID
	})
}
