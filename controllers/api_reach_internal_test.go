package controllers

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/clock"

	"github.com/poolkeeper/poolkeeper/internal/liveness"
)

// While the operator cannot reach the API server nothing is recounted; the
// first probe that reaches it again makes every pool's silence count from
// then.
func TestAPIReachWatchRecountsAfterAnOutage(t *testing.T) {
	var down atomic.Bool
	rc := liveness.NewRecount()
	w := &APIReachWatch{Recount: rc, Clock: clock.RealClock{}, Interval: 5 * time.Millisecond, Log: logr.Discard(),
		Probe: func(context.Context) error {
			if down.Load() {
				return errors.New("connection refused")
			}
			return nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Start(ctx) }()
	defer func() { cancel(); <-done }()

	time.Sleep(30 * time.Millisecond)
	if from, _ := rc.From("ns/p"); !from.IsZero() {
		t.Fatalf("recounted from %v with the API server reachable all along", from)
	}
	down.Store(true)
	time.Sleep(30 * time.Millisecond)
	if from, _ := rc.From("ns/p"); !from.IsZero() {
		t.Fatalf("recounted from %v while the API server is still unreachable", from)
	}
	if _, cut := rc.CutOff(); !cut {
		t.Fatal("the operator is not counted cut off while the API server is unreachable")
	}
	back := time.Now()
	down.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if from, _ := rc.From("ns/p"); !from.IsZero() {
			if from.Before(back) {
				t.Fatalf("recounted from %v, before the API server answered again at %v", from, back)
			}
			if _, cut := rc.CutOff(); cut {
				t.Fatal("still counted cut off after the API server answered again")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no recount after the API server answered again")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A /readyz the operator may not read (401, 403) or that does not exist
// (404) is an answer: only a failed request or a server not ready (5xx,
// 429, a timeout) is an outage, during which no silence counts.
func TestReachErrorCountsOnlyNoAnswer(t *testing.T) {
	gr := schema.GroupResource{}
	for _, c := range []struct {
		err     error
		outage  bool
		because string
	}{
		{nil, false, "ready"},
		{apierrors.NewForbidden(gr, "", errors.New("no")), false, "403: answered"},
		{apierrors.NewUnauthorized("no"), false, "401: answered"},
		{apierrors.NewNotFound(gr, "readyz"), false, "404: answered"},
		{apierrors.NewInternalError(errors.New("etcd check failed")), true, "500: not ready"},
		{apierrors.NewServiceUnavailable("starting"), true, "503"},
		{apierrors.NewTooManyRequests("busy", 1), true, "429"},
		{errors.New("dial tcp: connection refused"), true, "no answer"},
		{context.DeadlineExceeded, true, "timed out"},
	} {
		if got := reachError(c.err) != nil; got != c.outage {
			t.Errorf("reachError(%v) counts as an outage: %v, want %v (%s)", c.err, got, c.outage, c.because)
		}
	}
}
