package controllers

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// conflictsRequeued wraps a reconciler so that an optimistic-concurrency
// conflict — the object was written since it was read, routine where several
// controllers and agents write one object — is retried quietly (logged at
// V(1)) a moment later instead of being logged as a "Reconciler error". Any
// other error is returned as it is.
func conflictsRequeued(r reconcile.Reconciler) reconcile.Reconciler {
	return reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
		res, err := r.Reconcile(ctx, req)
		if err == nil || !onlyConflicts(err) {
			return res, err
		}
		ctrl.LoggerFrom(ctx).V(1).Info("Write conflict: reconciling again", "error", err.Error())
		// A short, jittered wait: the watch event of the write that won
		// usually arrives first and brings the retry anyway.
		return reconcile.Result{RequeueAfter: time.Duration(50+rand.IntN(200)) * time.Millisecond}, nil
	})
}

// onlyConflicts reports whether err is, or joins, nothing but conflicts.
func onlyConflicts(err error) bool {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if e != nil && !onlyConflicts(e) {
				return false
			}
		}
		return true
	}
	return apierrors.IsConflict(err) && !errors.Is(err, reconcile.TerminalError(nil))
}
