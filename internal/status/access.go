package status

import (
	"fmt"
	"reflect"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The kit reaches a kind's status by its Go shape, as every kind of the API
// has it: a pointer to a struct with a Status struct field holding
// Conditions []metav1.Condition and ObservedGeneration int64. That keeps the
// API types free of accessor methods.

var conditionsType = reflect.TypeFor[[]metav1.Condition]()

// statusOf is obj's Status field.
func statusOf(obj client.Object) reflect.Value {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("status: %T is not a pointer to a struct", obj))
	}
	st := v.Elem().FieldByName("Status")
	if !st.IsValid() || st.Kind() != reflect.Struct {
		panic(fmt.Sprintf("status: %T has no Status struct", obj))
	}
	return st
}

// Conditions is a pointer to obj's status.conditions.
func Conditions(obj client.Object) *[]metav1.Condition {
	c := statusOf(obj).FieldByName("Conditions")
	if !c.IsValid() || c.Type() != conditionsType {
		panic(fmt.Sprintf("status: %T has no Status.Conditions []metav1.Condition", obj))
	}
	return c.Addr().Interface().(*[]metav1.Condition)
}

// setObservedGeneration records obj's generation in status.observedGeneration.
func setObservedGeneration(obj client.Object) {
	g := statusOf(obj).FieldByName("ObservedGeneration")
	if !g.IsValid() || g.Kind() != reflect.Int64 {
		panic(fmt.Sprintf("status: %T has no Status.ObservedGeneration int64", obj))
	}
	g.SetInt(obj.GetGeneration())
}

// statusEqual reports whether a and b have the same status.
func statusEqual(a, b client.Object) bool {
	return equalities.DeepEqual(statusOf(a).Interface(), statusOf(b).Interface())
}
