package status

import (
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var equalities = equality.Semantic

// The condition types kstatus reads before Ready.
const (
	// Reconciling is present (True) only while the operator works towards
	// the spec and will get on by itself.
	Reconciling = "Reconciling"
	// Stalled is present (True) only while nothing changes until a person
	// changes the spec or the world.
	Stalled = "Stalled"
	// ReasonReconciling is the reason of a Reconciling condition that has
	// no better one.
	ReasonReconciling = "Reconciling"
)

// Set sets condition t of obj, recording obj's generation, and reports
// whether it changed. A reason is always set.
func Set(obj client.Object, t string, st metav1.ConditionStatus, reason, msg string) bool {
	return meta.SetStatusCondition(Conditions(obj), metav1.Condition{Type: t, Status: st, Reason: reason, Message: msg,
		ObservedGeneration: obj.GetGeneration()})
}

// Remove removes condition t of obj and reports whether it was there.
func Remove(obj client.Object, t string) bool { return meta.RemoveStatusCondition(Conditions(obj), t) }

// Find is condition t of obj, nil if absent.
func Find(obj client.Object, t string) *metav1.Condition {
	return meta.FindStatusCondition(*Conditions(obj), t)
}

// IsTrue reports whether condition t of obj is True.
func IsTrue(obj client.Object, t string) bool { return meta.IsStatusConditionTrue(*Conditions(obj), t) }

// Bool is the condition status of b.
func Bool(b bool) metav1.ConditionStatus {
	if b {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}

// Progress is what an object's Reconciling and Stalled conditions say.
// Neither true: neither condition is present.
type Progress struct {
	// Reconciling: the operator is working towards the spec and will get on.
	Reconciling bool
	// Stalled: the operator cannot get on until a person acts. It wins over
	// Reconciling.
	Stalled bool
	// Reason and Message are those of the condition that is True.
	Reason, Message string
}

// ProgressOf is Progress with the reason and message of cond (nil: the
// reason Reconciling).
func ProgressOf(cond *metav1.Condition, reconciling, stalled bool) Progress {
	p := Progress{Reconciling: reconciling, Stalled: stalled}
	if cond != nil {
		p.Reason, p.Message = cond.Reason, cond.Message
	}
	if p.Reason == "" {
		p.Reason = ReasonReconciling
	}
	return p
}

// SetProgress sets the condition p says is True and removes the other; both
// are removed when neither holds.
func SetProgress(obj client.Object, p Progress) {
	switch {
	case p.Stalled:
		Set(obj, Stalled, metav1.ConditionTrue, p.Reason, p.Message)
		Remove(obj, Reconciling)
	case p.Reconciling:
		Set(obj, Reconciling, metav1.ConditionTrue, p.Reason, p.Message)
		Remove(obj, Stalled)
	default:
		Remove(obj, Reconciling)
		Remove(obj, Stalled)
	}
}
