package backup

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// RecoverySource is one opened backup a Recovery may take VMs from.
type RecoverySource struct {
	// Backup is the PoolBackup's name.
	Backup string
	// CompletedAt is its status.completedAt: the newest wins.
	CompletedAt time.Time
	// Dump is its content.
	Dump *Dump
}

// RecoverySelection is what a Recovery chooses: VMs by name, by vApp
// (spec.applianceRef) or by labels. A VM chosen in any way is recovered.
type RecoverySelection struct {
	VirtualMachines []string
	Appliances      []string
	// Selector, when not nil, chooses VMs whose labels it matches.
	Selector labels.Selector
}

// ExistingVM is a VM the recovery pool's namespace already has.
type ExistingVM struct {
	Name, UUID string
	// PowerState is its status.powerState.
	PowerState vpoolv1alpha1.PowerState
	// Since is when its information dates from: the completedAt of the
	// backup it was recovered from, else its creation.
	Since time.Time
	// Ours: the recovery being planned created or replaced it (its
	// LabelRecovery), before a crash or before its spec changed.
	Ours bool
}

// RecoveryExisting is what the namespace already has.
type RecoveryExisting struct {
	VMs          []ExistingVM
	VirtualDisks map[string]bool
	StorageRepos map[string]bool
	// Appliances are the vApps it has, by name.
	Appliances map[string]bool
}

// RecoveryPlan is what a Recovery does: per VM, the newest information
// found across the sources, and the VDIs and SRs those VMs need.
type RecoveryPlan struct {
	// Items is the plan as written to status.plan: VMs, then VDIs, then
	// SRs, then vApps.
	Items []vpoolv1alpha1.RecoveryItem
	// VMs are the records to create or replace, with their source.
	VMs []PlannedRecord[VirtualMachineRecord]
	// VirtualDisks and StorageRepositories are the records to create.
	VirtualDisks        []PlannedRecord[VirtualDiskRecord]
	StorageRepositories []PlannedRecord[StorageRepositoryRecord]
	// Conflicts counts the items in conflict: with Fail nothing is written.
	Conflicts int
}

// PlannedRecord is a record and the source it comes from.
type PlannedRecord[T any] struct {
	Record  T
	Source  string
	Replace bool
}

// Blocked reports whether the plan may not be carried out (conflicts with Fail).
func (p *RecoveryPlan) Blocked(mode vpoolv1alpha1.RecoveryConflicts) bool {
	return p.Conflicts > 0 && mode == vpoolv1alpha1.ConflictsFail
}

// ForTestFailover makes the plan a test failover's: it replaces nothing (a
// VM it would replace is skipped, saying so), since a test must leave the
// pool's own VMs as they are.
func (p *RecoveryPlan) ForTestFailover() {
	replaced := map[string]bool{}
	for i := range p.Items {
		it := &p.Items[i]
		if it.Kind == KindVirtualMachine && it.Action == vpoolv1alpha1.ActionReplace {
			it.Action, it.Message = vpoolv1alpha1.ActionSkip, "a test failover replaces nothing: "+it.Message
			replaced[it.UUID+"/"+it.Source] = true
		}
	}
	p.VMs = slices.DeleteFunc(p.VMs, func(r PlannedRecord[VirtualMachineRecord]) bool {
		return r.Replace && replaced[r.Record.Status.UUID+"/"+r.Source]
	})
}

// chosenVM is the newest record of one VM identity.
type chosenVM struct {
	rec VirtualMachineRecord
	src *RecoverySource
}

// PlanRecovery plans a recovery. For every VM the selection chooses in
// any source it takes the record of the newest source that has the VM
// (matched by status.uuid; a VM without one by name), then decides it
// against the pool's VMs under mode, and adds the VDIs and SRs the
// recovered VMs need, from the same source, that the namespace lacks.
// It is a pure function of its inputs; ties on completedAt go to the
// backup named first in alphabetical order, so the plan is stable.
func PlanRecovery(sources []RecoverySource, sel RecoverySelection, have RecoveryExisting,
	mode vpoolv1alpha1.RecoveryConflicts) *RecoveryPlan {
	srcs := make([]*RecoverySource, 0, len(sources))
	for i := range sources {
		srcs = append(srcs, &sources[i])
	}
	slices.SortStableFunc(srcs, func(a, b *RecoverySource) int {
		return cmp.Or(b.CompletedAt.Compare(a.CompletedAt), cmp.Compare(a.Backup, b.Backup))
	})
	identities := chosenIdentities(srcs, sel)
	newest := map[string]chosenVM{}
	var order []string
	for _, src := range srcs {
		for _, vm := range src.Dump.VirtualMachines {
			id := vmIdentity(vm)
			if _, seen := newest[id]; seen || !identities[id] {
				continue
			}
			newest[id] = chosenVM{rec: vm, src: src}
			order = append(order, id)
		}
	}
	slices.SortFunc(order, func(a, b string) int {
		return cmp.Compare(newest[a].rec.Metadata.Name, newest[b].rec.Metadata.Name)
	})
	p := &RecoveryPlan{}
	needs := map[*RecoverySource][]string{}
	for _, id := range order {
		c := newest[id]
		item, recover := decideVM(c, have.VMs, mode)
		p.Items = append(p.Items, item)
		if item.Action == vpoolv1alpha1.ActionConflict {
			p.Conflicts++
		}
		if recover {
			p.VMs = append(p.VMs, PlannedRecord[VirtualMachineRecord]{Record: c.rec, Source: c.src.Backup,
				Replace: item.Action == vpoolv1alpha1.ActionReplace})
			needs[c.src] = append(needs[c.src], vmDisks(c.rec)...)
		}
	}
	p.planStorage(srcs, needs, have)
	p.planAppliances(srcs, have)
	return p
}

// planAppliances adds the vApps the recovered VMs name, from the source
// each VM comes from, reusing those the namespace has; a vApp in no source
// is not planned (its VMs wait, ApplianceNotFound, until one is created).
func (p *RecoveryPlan) planAppliances(srcs []*RecoverySource, have RecoveryExisting) {
	bySource := map[string]*RecoverySource{}
	for _, src := range srcs {
		bySource[src.Backup] = src
	}
	seen := map[string]bool{}
	var items []vpoolv1alpha1.RecoveryItem
	for _, vm := range p.VMs {
		ref := vm.Record.Spec.ApplianceRef
		if ref == nil || seen[ref.Name] {
			continue
		}
		src := bySource[vm.Source]
		i := slices.IndexFunc(src.Dump.VirtualAppliances, func(r VirtualApplianceRecord) bool { return r.Metadata.Name == ref.Name })
		switch {
		case have.Appliances[ref.Name]:
			items = append(items, storageItem(KindVirtualAppliance, ref.Name, src.Backup, vpoolv1alpha1.ActionReuse))
		case i >= 0:
			items = append(items, storageItem(KindVirtualAppliance, ref.Name, src.Backup, vpoolv1alpha1.ActionCreate))
		default:
			continue
		}
		seen[ref.Name] = true
	}
	slices.SortFunc(items, func(a, b vpoolv1alpha1.RecoveryItem) int { return cmp.Compare(a.Name, b.Name) })
	p.Items = append(p.Items, items...)
}

// chosenIdentities are the identities of the VMs the selection chooses in
// any source.
func chosenIdentities(srcs []*RecoverySource, sel RecoverySelection) map[string]bool {
	ids := map[string]bool{}
	for _, src := range srcs {
		for _, vm := range src.Dump.VirtualMachines {
			if chosen(vm, sel) {
				ids[vmIdentity(vm)] = true
			}
		}
	}
	return ids
}

func chosen(vm VirtualMachineRecord, sel RecoverySelection) bool {
	if slices.Contains(sel.VirtualMachines, vm.Metadata.Name) {
		return true
	}
	if ref := vm.Spec.ApplianceRef; ref != nil && slices.Contains(sel.Appliances, ref.Name) {
		return true
	}
	return sel.Selector != nil && !sel.Selector.Empty() && sel.Selector.Matches(labels.Set(vm.Metadata.Labels))
}

func vmIdentity(vm VirtualMachineRecord) string {
	if vm.Status.UUID != "" {
		return "uuid:" + vm.Status.UUID
	}
	return "name:" + vm.Metadata.Name
}

// decideVM decides one chosen VM against the pool's VMs.
func decideVM(c chosenVM, have []ExistingVM, mode vpoolv1alpha1.RecoveryConflicts) (vpoolv1alpha1.RecoveryItem, bool) {
	completed := metav1.NewTime(c.src.CompletedAt)
	item := vpoolv1alpha1.RecoveryItem{Kind: KindVirtualMachine, Name: c.rec.Metadata.Name, UUID: c.rec.Status.UUID,
		Source: c.src.Backup, SourceCompletedAt: &completed, Action: vpoolv1alpha1.ActionCreate}
	i := slices.IndexFunc(have, func(e ExistingVM) bool {
		return e.Name == c.rec.Metadata.Name || (e.UUID != "" && e.UUID == c.rec.Status.UUID)
	})
	if i < 0 {
		return item, true
	}
	e := have[i]
	same := e.UUID != "" && e.UUID == c.rec.Status.UUID
	switch {
	case same && e.Ours:
		item.Name, item.Action, item.Message = e.Name, vpoolv1alpha1.ActionReuse, fmt.Sprintf("VM %s was recovered by this Recovery", e.Name)
		return item, false
	case !same:
		item.Message = fmt.Sprintf("the pool has another VM named %s (uuid %s)", e.Name, e.UUID)
	case mode == vpoolv1alpha1.ConflictsPreferNewer && e.PowerState == vpoolv1alpha1.PowerHalted && c.src.CompletedAt.After(e.Since):
		item.Name, item.Action, item.Message = e.Name, vpoolv1alpha1.ActionReplace,
			fmt.Sprintf("replaces VM %s, Halted, whose information dates from %s", e.Name, e.Since.UTC().Format(time.RFC3339))
		return item, true
	case mode == vpoolv1alpha1.ConflictsPreferNewer && e.PowerState != vpoolv1alpha1.PowerHalted:
		item.Action, item.Message = vpoolv1alpha1.ActionSkip, fmt.Sprintf("VM %s is %s: only a Halted VM is replaced", e.Name, orNone(string(e.PowerState)))
		return item, false
	case mode == vpoolv1alpha1.ConflictsPreferNewer:
		item.Action, item.Message = vpoolv1alpha1.ActionSkip,
			fmt.Sprintf("VM %s dates from %s, not older than the backup", e.Name, e.Since.UTC().Format(time.RFC3339))
		return item, false
	default:
		item.Message = fmt.Sprintf("the pool already has VM %s (the same uuid)", e.Name)
	}
	if mode == vpoolv1alpha1.ConflictsFail {
		item.Action = vpoolv1alpha1.ActionConflict
	} else {
		item.Action = vpoolv1alpha1.ActionSkip
	}
	return item, false
}

func vmDisks(vm VirtualMachineRecord) []string {
	var names []string
	for _, d := range vm.Spec.Disks {
		names = append(names, d.VirtualDisk)
	}
	if s := vm.Status.SuspendVirtualDisk; s != "" {
		names = append(names, s)
	}
	return names
}

// planStorage adds the VDIs the recovered VMs need, and their SRs, from
// the source each VM comes from, reusing what the namespace has.
func (p *RecoveryPlan) planStorage(srcs []*RecoverySource, needs map[*RecoverySource][]string, have RecoveryExisting) {
	vdis, srs := map[string]bool{}, map[string]bool{}
	var vdiItems, srItems []vpoolv1alpha1.RecoveryItem
	for _, src := range srcs {
		for _, name := range needs[src] {
			i := slices.IndexFunc(src.Dump.VirtualDisks, func(r VirtualDiskRecord) bool { return r.Metadata.Name == name })
			if vdis[name] || i < 0 {
				continue
			}
			vdis[name] = true
			rec := src.Dump.VirtualDisks[i]
			if have.VirtualDisks[name] {
				vdiItems = append(vdiItems, storageItem(KindVirtualDisk, name, src.Backup, vpoolv1alpha1.ActionReuse))
			} else {
				vdiItems = append(vdiItems, storageItem(KindVirtualDisk, name, src.Backup, vpoolv1alpha1.ActionCreate))
				p.VirtualDisks = append(p.VirtualDisks, PlannedRecord[VirtualDiskRecord]{Record: rec, Source: src.Backup})
			}
			sr := rec.Spec.StorageRepository
			j := slices.IndexFunc(src.Dump.StorageRepositories, func(r StorageRepositoryRecord) bool { return r.Metadata.Name == sr })
			if srs[sr] || j < 0 {
				continue
			}
			srs[sr] = true
			if have.StorageRepos[sr] {
				srItems = append(srItems, storageItem(KindStorageRepository, sr, src.Backup, vpoolv1alpha1.ActionReuse))
			} else {
				srItems = append(srItems, storageItem(KindStorageRepository, sr, src.Backup, vpoolv1alpha1.ActionCreate))
				p.StorageRepositories = append(p.StorageRepositories,
					PlannedRecord[StorageRepositoryRecord]{Record: src.Dump.StorageRepositories[j], Source: src.Backup})
			}
		}
	}
	byName := func(a, b vpoolv1alpha1.RecoveryItem) int { return cmp.Compare(a.Name, b.Name) }
	slices.SortFunc(vdiItems, byName)
	slices.SortFunc(srItems, byName)
	p.Items = append(append(p.Items, vdiItems...), srItems...)
}

func storageItem(kind, name, source string, action vpoolv1alpha1.RecoveryAction) vpoolv1alpha1.RecoveryItem {
	return vpoolv1alpha1.RecoveryItem{Kind: kind, Name: name, Source: source, Action: action}
}

func orNone(s string) string {
	if s == "" {
		return "in no known power state"
	}
	return s
}
