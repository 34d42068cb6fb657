package status

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Part is the part of a kind's status one controller owns, when several
// write it (the Pool's reconcilers). The part is laid over the object as
// read and sent in a merge patch under an optimistic lock: a JSON merge
// patch replaces status.conditions whole, and the lock is what makes that
// safe (a write over an object another controller wrote since is refused as
// a conflict, instead of dropping the other's fields).
type Part[T client.Object] struct {
	// Fields copies the part's status fields from src to dst.
	Fields func(dst, src T)
	// Conditions are the part's condition types: only those are set or
	// removed by the write.
	Conditions []string
}

// Event is an announcement queued during a reconcile, made once the status
// that tells the same story is written.
type Event struct {
	// Type is corev1.EventTypeNormal for an action taken, Warning for a
	// refusal or a failure; Reason is the condition reason it goes with.
	Type, Reason, Action, Note string
	// Observe, if set, runs once the status is written: it records the
	// metric, or what the controller keeps in memory, of what the event
	// announces.
	Observe func()
}

// Helper writes one reconcile's status of one object.
type Helper[T client.Object] struct {
	client   client.Client
	recorder events.EventRecorder
	obj      T
	before   T
	part     *Part[T]
	reader   client.Reader
	events   []Event
	written  bool
}

// New starts the status write of obj, read just now: before is a copy of it.
// The Helper owns the whole status.
func New[T client.Object](c client.Client, rec events.EventRecorder, obj T) *Helper[T] {
	return NewFrom(c, rec, obj.DeepCopyObject().(T), obj)
}

// NewFrom is New when the caller already holds the object as read, before,
// which it must not change any more; obj is what it decides on.
func NewFrom[T client.Object](c client.Client, rec events.EventRecorder, before, obj T) *Helper[T] {
	Conditions(obj) // a kind without conditions fails here, not in the middle of a write
	return &Helper[T]{client: c, recorder: rec, obj: obj, before: before}
}

// Owning restricts the write to part.
func (h *Helper[T]) Owning(part Part[T]) *Helper[T] {
	h.part = &part
	return h
}

// RetryingConflicts makes Patch, on a conflict, read the object again from
// reader and lay the part over it, a few times. It is for a part that does
// not depend on the rest of the status and costs much to compute (a
// restore's outcome): a write of another part meanwhile must not make that
// work be done again. Only one controller may write the part, one reconcile
// of an object at a time.
func (h *Helper[T]) RetryingConflicts(reader client.Reader) *Helper[T] {
	h.reader = reader
	return h
}

// Object is the object being decided on.
func (h *Helper[T]) Object() T { return h.obj }

// Before is the object as last read or written.
func (h *Helper[T]) Before() T { return h.before }

// Set sets a condition of the object (see the package function Set).
func (h *Helper[T]) Set(t string, st metav1.ConditionStatus, reason, msg string) bool {
	return Set(h.obj, t, st, reason, msg)
}

// Remove removes a condition of the object.
func (h *Helper[T]) Remove(t string) bool { return Remove(h.obj, t) }

// Get is a condition of the object as decided so far.
func (h *Helper[T]) Get(t string) *metav1.Condition { return Find(h.obj, t) }

// Was is a condition of the object as last read or written.
func (h *Helper[T]) Was(t string) *metav1.Condition { return Find(h.before, t) }

// SetProgress sets the object's Reconciling and Stalled conditions.
func (h *Helper[T]) SetProgress(p Progress) { SetProgress(h.obj, p) }

// Event queues an announcement for after the write.
func (h *Helper[T]) Event(e Event) { h.events = append(h.events, e) }

// Eventf queues an announcement without a metric.
func (h *Helper[T]) Eventf(eventType, reason, action, format string, args ...any) {
	h.Event(Event{Type: eventType, Reason: reason, Action: action, Note: fmt.Sprintf(format, args...)})
}

// Queued is the number of announcements queued and not yet made.
func (h *Helper[T]) Queued() int { return len(h.events) }

// Written reports whether a status write was sent (and succeeded) so far.
func (h *Helper[T]) Written() bool { return h.written }

// Write records the status now, for a step that must be recorded before the
// action it allows; it announces the events queued so far and re-bases
// before on what it wrote. observedGeneration is left for Patch.
func (h *Helper[T]) Write(ctx context.Context) error {
	if err := h.write(ctx); err != nil {
		return err
	}
	h.announce()
	return nil
}

// Patch is the reconcile's one deferred write: it sets observedGeneration
// if err is nil or terminal, writes what changed, announces the queued
// events once written, and returns err joined with the write's error.
// Call it as
//
//	defer func() { err = h.Patch(ctx, err) }()
func (h *Helper[T]) Patch(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, reconcile.TerminalError(nil)) {
		setObservedGeneration(h.obj)
	}
	if perr := h.write(ctx); perr != nil {
		if err == nil {
			return perr
		}
		return errors.Join(err, perr)
	}
	h.announce()
	return err
}

func (h *Helper[T]) write(ctx context.Context) error {
	out := h.obj
	if h.part != nil {
		out = h.laid(h.before)
	}
	if statusEqual(h.before, out) {
		return nil
	}
	err := h.client.Status().Patch(ctx, out, client.MergeFromWithOptions(h.before, client.MergeFromWithOptimisticLock{}))
	for range 5 {
		if h.reader == nil || h.part == nil || !apierrors.IsConflict(err) {
			break
		}
		fresh := h.before.DeepCopyObject().(T)
		if err = h.reader.Get(ctx, client.ObjectKeyFromObject(h.obj), fresh); err != nil {
			return fmt.Errorf("reading %s again: %w", h.name(), err)
		}
		h.before = fresh
		out = h.laid(fresh)
		if statusEqual(fresh, out) {
			return nil
		}
		err = h.client.Status().Patch(ctx, out, client.MergeFromWithOptions(fresh, client.MergeFromWithOptimisticLock{}))
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil // gone: nothing left to tell
		}
		return fmt.Errorf("patching status of %s: %w", h.name(), err)
	}
	if h.part != nil {
		// The object as the API server returned it: this reconcile's part
		// over what it had read.
		reflect.ValueOf(h.obj).Elem().Set(reflect.ValueOf(out).Elem())
	}
	h.before = h.obj.DeepCopyObject().(T)
	h.written = true
	return nil
}

// laid is base with this reconcile's part of the status.
func (h *Helper[T]) laid(base T) T {
	out := base.DeepCopyObject().(T)
	h.part.Fields(out, h.obj)
	conds := Conditions(out)
	for _, t := range h.part.Conditions {
		if c := Find(h.obj, t); c != nil {
			meta.SetStatusCondition(conds, *c)
		} else {
			meta.RemoveStatusCondition(conds, t)
		}
	}
	return out
}

func (h *Helper[T]) announce() {
	for _, e := range h.events {
		h.recorder.Eventf(h.obj, nil, e.Type, e.Reason, e.Action, "%s", e.Note)
		if e.Observe != nil {
			e.Observe()
		}
	}
	h.events = nil
}

func (h *Helper[T]) name() string {
	return fmt.Sprintf("%s %s", reflect.TypeOf(h.obj).Elem().Name(), klog.KObj(h.obj))
}
