package controllers

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/placement"
)

// setDiskReady sets a VDI's Ready condition from its lock, or from refused
// (why its SR reference cannot be used, nil if it can), and reports whether
// its status changed.
func setDiskReady(vdi *vpoolv1alpha1.VirtualDisk, refused *placement.Decision) bool {
	status, reason, msg := metav1.ConditionTrue, "Unlocked", "not attached RW by any host"
	switch l := vdi.Status.Lock; {
	case refused != nil:
		status, reason, msg = metav1.ConditionFalse, refused.Reason, refused.Message
		if l != nil {
			msg += fmt.Sprintf("; attached RW by %s for VM %s", l.Host, l.VirtualMachine)
		}
	case l != nil:
		reason, msg = "Locked", fmt.Sprintf("attached RW by %s for VM %s", l.Host, l.VirtualMachine)
	}
	changed := vdi.Status.ObservedGeneration != vdi.Generation
	vdi.Status.ObservedGeneration = vdi.Generation
	return meta.SetStatusCondition(&vdi.Status.Conditions, metav1.Condition{Type: vpoolv1alpha1.ConditionReady,
		Status: status, Reason: reason, Message: msg, ObservedGeneration: vdi.Generation}) || changed
}
