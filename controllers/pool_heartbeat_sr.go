package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Reasons of the Pool's HeartbeatStorage condition.
const (
	// ReasonHeartbeatSRNotSet: HA is on without a heartbeat SR, so a
	// control-plane outage longer than the heartbeat timeout stops every VM.
	ReasonHeartbeatSRNotSet = "HeartbeatSRNotSet"
	// ReasonHeartbeatSRInvalid: the named SR is missing, of another pool, or not shared.
	ReasonHeartbeatSRInvalid = "HeartbeatSRInvalid"
	// ReasonHeartbeatSRReady: the agents keep a statefile on a shared SR.
	ReasonHeartbeatSRReady = "HeartbeatSRReady"
)

// heartbeatSRCondition sets HeartbeatStorage: whether the agents have a
// second heartbeat channel, so that an outage of the API server stops no VM.
func (r *PoolReconciler) heartbeatSRCondition(ctx context.Context, pool *vpoolv1alpha1.Pool,
	settings *vpoolv1alpha1.EffectiveSettings, set setCondition) error {
	name := settings.HA.HeartbeatStorageRepository
	field := "spec.ha.heartbeatStorageRepository"
	switch {
	case !settings.HA.Enabled:
		set(vpoolv1alpha1.PoolHeartbeatStorage, metav1.ConditionTrue, ReasonHADisabled,
			"HA is off: no host is fenced automatically, so an outage of the API server fences nobody")
		return nil
	case name == "":
		set(vpoolv1alpha1.PoolHeartbeatStorage, metav1.ConditionFalse, ReasonHeartbeatSRNotSet, fmt.Sprintf(
			"%s is not set: an agent that cannot renew its heartbeat for %s stops every VM, so an outage of the API server "+
				"or etcd longer than that stops every VM of the pool; name a shared SR to ride it out", field, settings.HeartbeatTimeout))
		return nil
	}
	sr := &vpoolv1alpha1.StorageRepository{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: name}, sr); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		set(vpoolv1alpha1.PoolHeartbeatStorage, metav1.ConditionFalse, ReasonHeartbeatSRInvalid,
			fmt.Sprintf("%s: StorageRepository %q not found: outages are not ridden out", field, name))
		return nil
	}
	switch {
	case sr.Spec.PoolRef.Name != pool.Name:
		set(vpoolv1alpha1.PoolHeartbeatStorage, metav1.ConditionFalse, ReasonHeartbeatSRInvalid,
			fmt.Sprintf("%s: StorageRepository %q belongs to pool %q: outages are not ridden out", field, name, sr.Spec.PoolRef.Name))
	case !sr.Spec.Shared:
		set(vpoolv1alpha1.PoolHeartbeatStorage, metav1.ConditionFalse, ReasonHeartbeatSRInvalid,
			fmt.Sprintf("%s: StorageRepository %q is not shared: every host must reach the statefile", field, name))
	default:
		set(vpoolv1alpha1.PoolHeartbeatStorage, metav1.ConditionTrue, ReasonHeartbeatSRReady, fmt.Sprintf(
			"the agents keep a statefile on StorageRepository %q: an outage of the API server that cuts off more than "+
				"maxUnhealthyPercent of the hosts stops no VM", name))
	}
	return nil
}
