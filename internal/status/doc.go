// Package status is the status kit every reconciler uses the same way:
// gather into a scope, decide, then one deferred write. A Helper, in the
// spirit of Cluster API's util/patch, holds the object as read and the object
// being decided on; Patch writes the difference once, under an optimistic
// lock, and only the part of the status this controller owns (its fields and
// its conditions, see Part); nothing is written when nothing changed;
// status.observedGeneration is set only when the reconcile succeeded (or
// ended on a spec error, reconcile.TerminalError: the generation was judged);
// a patch error is joined to the reconcile's error. Events are queued during
// the reconcile and announced only once the status that tells the same story
// is written. A step that must be recorded before a destructive action (a
// fence, a lock release, a VM reset) calls Write in the middle: it writes
// now, announces the events queued so far and re-bases.
//
// Conditions are set through the kit too (Set, Remove, SetProgress): every
// condition records the generation it was decided for, and Reconciling and
// Stalled, read by kstatus (Flux, Argo CD), are present only while true.
package status
