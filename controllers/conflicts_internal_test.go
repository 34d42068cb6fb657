package controllers

import (
	"context"
	"errors"
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// A write conflict is retried quietly; any other error, alone or joined to
// a conflict, is returned for the controller's backoff and its error log.
func TestConflictsRequeued(t *testing.T) {
	conflict := apierrors.NewConflict(schema.GroupResource{Resource: "hosts"}, "h1", errors.New("the object has been modified"))
	other := errors.New("the API server is down")
	cases := map[string]struct {
		err     error
		requeue bool
	}{
		"a conflict":                   {conflict, true},
		"a wrapped conflict":           {fmt.Errorf("patching status of host h1: %w", conflict), true},
		"two conflicts joined":         {errors.Join(conflict, fmt.Errorf("patching: %w", conflict)), true},
		"a conflict and another error": {errors.Join(other, conflict), false},
		"another error":                {other, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			r := conflictsRequeued(reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) {
				return reconcile.Result{}, c.err
			}))
			res, err := r.Reconcile(context.Background(), reconcile.Request{})
			if c.requeue {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(res.RequeueAfter).To(BeNumerically(">", 0))
			} else {
				g.Expect(err).To(MatchError(c.err))
			}
		})
	}
}
