package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// progress is what an object's Reconciling and Stalled conditions say, the
// two kstatus (Flux, Argo CD) reads before Ready: work under way, or work
// that only a person can unblock. Both false: neither condition is present.
type progress struct {
	// Reconciling: the operator is working towards the spec and will get on.
	Reconciling bool
	// Stalled: the operator cannot get on until a person changes the spec or
	// the world. It wins over Reconciling.
	Stalled bool
	// Reason and Message are those of the condition that is True.
	Reason, Message string
}

// setProgress sets the condition progress says is True and removes the other;
// both are removed when neither holds, so each is present only while true.
func setProgress(conds *[]metav1.Condition, generation int64, p progress) {
	set := func(t string) {
		meta.SetStatusCondition(conds, metav1.Condition{Type: t, Status: metav1.ConditionTrue, Reason: p.Reason,
			Message: p.Message, ObservedGeneration: generation})
	}
	switch {
	case p.Stalled:
		set(vpoolv1alpha1.ConditionStalled)
		meta.RemoveStatusCondition(conds, vpoolv1alpha1.ConditionReconciling)
	case p.Reconciling:
		set(vpoolv1alpha1.ConditionReconciling)
		meta.RemoveStatusCondition(conds, vpoolv1alpha1.ConditionStalled)
	default:
		meta.RemoveStatusCondition(conds, vpoolv1alpha1.ConditionReconciling)
		meta.RemoveStatusCondition(conds, vpoolv1alpha1.ConditionStalled)
	}
}

// conditionProgress is progress copying the reason and message of cond.
func conditionProgress(cond *metav1.Condition, reconciling, stalled bool) progress {
	p := progress{Reconciling: reconciling, Stalled: stalled}
	if cond != nil {
		p.Reason, p.Message = cond.Reason, cond.Message
	}
	if p.Reason == "" {
		p.Reason = vpoolv1alpha1.ReasonReconciling
	}
	return p
}
