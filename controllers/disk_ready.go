package controllers

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/placement"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// setDiskReady sets a VDI's Ready condition from its lock, or from refused
// (why its SR reference cannot be used, nil if it can), and reports whether
// its status changed. A refused reference is a spec error only a person can
// fix: the VDI is Stalled for kstatus while it lasts.
func setDiskReady(vdi *vpoolv1alpha1.VirtualDisk, refused *placement.Decision) bool {
	ready, reason, msg := metav1.ConditionTrue, "Unlocked", "not attached RW by any host"
	switch l := vdi.Status.Lock; {
	case refused != nil:
		ready, reason, msg = metav1.ConditionFalse, refused.Reason, refused.Message
		if l != nil {
			msg += fmt.Sprintf("; attached RW by %s for VM %s", l.Host, l.VirtualMachine)
		}
	case l != nil:
		reason, msg = "Locked", fmt.Sprintf("attached RW by %s for VM %s", l.Host, l.VirtualMachine)
	}
	changed := vdi.Status.ObservedGeneration != vdi.Generation
	vdi.Status.ObservedGeneration = vdi.Generation
	changed = status.Set(vdi, vpoolv1alpha1.ConditionReady, ready, reason, msg) || changed
	stalled := status.Find(vdi, status.Stalled)
	if refused != nil && (stalled == nil || stalled.Reason != reason || stalled.Message != msg) {
		status.SetProgress(vdi, status.Progress{Stalled: true, Reason: reason, Message: msg})
		changed = true
	} else if refused == nil && stalled != nil {
		status.SetProgress(vdi, status.Progress{})
		changed = true
	}
	return changed
}
