package agent

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Attachment reasons, as the agent reports them in a StorageRepository's
// status.attachments (XenServer's PBD: plugged or not, and why).
const (
	// ReasonPlugged: the SR's storage pool is active on this host.
	ReasonPlugged = "Plugged"
	// ReasonPlugFailed: the host could not plug the SR; the message says why.
	ReasonPlugFailed = "PlugFailed"
	// ReasonNoStoragePool: the host's driver needs spec.libvirt.storagePool
	// to reach the SR, and the SR has none.
	ReasonNoStoragePool = "NoStoragePool"
	// ReasonSimulated: the sim driver's storage, attached everywhere the SR
	// is reachable.
	ReasonSimulated = "Simulated"
)

// hostState is what the agent remembers of the host's VMs and storage
// between two syncs.
type hostState struct {
	// waiting is, by VM, why it was last not started (logged once).
	waiting map[string]string
	// plugs are the last plug results, by SR.
	plugs map[string]plugResult
}

// plugResult is a plug of one SR's spec, at a time on the agent's clock.
type plugResult struct {
	generation int64
	at         time.Time
	attachment
}

// attachment is what this host found for one SR.
type attachment struct {
	attached              bool
	storagePool           string
	reason, message, name string
}

// reachable says whether host should plug sr: a shared SR everywhere in its
// pool, a local SR only on its own host.
func reachable(sr *vpoolv1alpha1.StorageRepository, host *vpoolv1alpha1.Host) bool {
	if sr.Spec.PoolRef.Name != host.Spec.PoolRef.Name {
		return false
	}
	return sr.Spec.Shared || sr.Spec.Host == host.Name
}

// plugStorage plugs every SR of the host's pool that the host should reach
// (pbd-plug) and reports each result in the SR's status.attachments, by
// server-side apply of this host's entry alone: agents of other hosts own
// theirs. It returns the results by SR name.
func (a *Agent) plugStorage(ctx context.Context, log logr.Logger, host *vpoolv1alpha1.Host) (map[string]attachment, error) {
	srs := &vpoolv1alpha1.StorageRepositoryList{}
	if err := a.client.List(ctx, srs, client.InNamespace(a.cfg.Namespace)); err != nil {
		return nil, fmt.Errorf("listing storage repositories: %w", err)
	}
	plugger, real := a.cfg.Driver.(StoragePlugger)
	out := map[string]attachment{}
	var firstErr error
	for i := range srs.Items {
		sr := &srs.Items[i]
		if !reachable(sr, host) || !sr.DeletionTimestamp.IsZero() {
			continue
		}
		if p, ok := a.plugs[sr.Name]; ok && p.generation == sr.Generation && p.attached &&
			a.cfg.Clock.Since(p.at) < a.passInterval {
			out[sr.Name] = p.attachment // plugged within a heartbeat: no need to ask the driver again
			continue
		}
		at := attachment{name: sr.Name, attached: true, reason: ReasonSimulated,
			message: "the sim driver's storage needs no plugging"}
		switch {
		case !real:
		case sr.Spec.Libvirt == nil:
			at = attachment{name: sr.Name, reason: ReasonNoStoragePool,
				message: "this host's driver reaches an SR through a storage pool: set spec.libvirt.storagePool"}
		default:
			at = attachment{name: sr.Name, storagePool: sr.Spec.Libvirt.StoragePool, attached: true, reason: ReasonPlugged,
				message: fmt.Sprintf("storage pool %s is active", sr.Spec.Libvirt.StoragePool)}
			if err := plugger.Plug(ctx, sr.Spec.Libvirt.StoragePool); err != nil {
				at.attached, at.reason = false, ReasonPlugFailed
				at.message = fmt.Sprintf("plugging storage pool %s: %v", sr.Spec.Libvirt.StoragePool, err)
			}
		}
		out[sr.Name] = at
		if a.plugs == nil {
			a.plugs = map[string]plugResult{}
		}
		a.plugs[sr.Name] = plugResult{generation: sr.Generation, at: a.cfg.Clock.Now(), attachment: at}
		if err := a.reportAttachment(ctx, log, sr, at); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return out, firstErr
}

// reportAttachment applies this host's entry of sr's status.attachments
// when it differs from what the SR says.
func (a *Agent) reportAttachment(ctx context.Context, log logr.Logger, sr *vpoolv1alpha1.StorageRepository, at attachment) error {
	i := slices.IndexFunc(sr.Status.Attachments, func(x vpoolv1alpha1.SRAttachment) bool { return x.Host == a.cfg.Host })
	var lastTransition any
	if i >= 0 {
		cur := sr.Status.Attachments[i]
		if cur.Attached == at.attached && cur.Reason == at.reason && cur.Message == at.message && cur.StoragePool == at.storagePool {
			return nil
		}
		if cur.Attached == at.attached && cur.LastTransitionTime != nil {
			lastTransition = cur.LastTransitionTime.UTC().Format("2006-01-02T15:04:05Z")
		}
	}
	if lastTransition == nil {
		lastTransition = a.cfg.Clock.Now().UTC().Format("2006-01-02T15:04:05Z")
	}
	entry := map[string]any{"host": a.cfg.Host, "attached": at.attached, "reason": at.reason, "message": at.message,
		"lastTransitionTime": lastTransition}
	if at.storagePool != "" {
		entry["storagePool"] = at.storagePool
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": vpoolv1alpha1.GroupVersion.String(), "kind": "StorageRepository",
		"metadata": map[string]any{"name": sr.Name, "namespace": sr.Namespace},
		"status":   map[string]any{"attachments": []any{entry}},
	}}
	if err := a.client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(a.fieldOwner()), client.ForceOwnership); err != nil {
		return fmt.Errorf("reporting attachment of SR %s: %w", sr.Name, err)
	}
	if at.attached {
		log.Info("Storage repository plugged", "sr", sr.Name, "storagePool", at.storagePool, "reason", at.reason)
	} else {
		log.Info("Storage repository not plugged", "sr", sr.Name, "reason", at.reason, "message", at.message)
	}
	return nil
}

// fieldOwner is this host's agent's field manager: server-side apply keeps
// each host's attachment entry apart.
func (a *Agent) fieldOwner() string { return "poolkeeper-agent-" + a.cfg.Host }

// diskFor builds the driver's disk for d of vm, creating its volume on first
// attach, or taking the one its vpoolv1alpha1.AnnotationVolume names
// (volumeOf), and records it in status.volume. notReady says why the VM
// cannot start here yet (empty when it can).
func (a *Agent) diskFor(ctx context.Context, vm *vpoolv1alpha1.VirtualMachine, d vpoolv1alpha1.VMDisk,
	plugged map[string]attachment) (disk Disk, notReady string, err error) {
	disk = Disk{Name: d.Name, VirtualDisk: d.VirtualDisk, Mode: string(d.Mode)}
	vdi := &vpoolv1alpha1.VirtualDisk{}
	if err := a.client.Get(ctx, client.ObjectKey{Namespace: vm.Namespace, Name: d.VirtualDisk}, vdi); err != nil {
		return disk, fmt.Sprintf("VirtualDisk %s cannot be read: %v", d.VirtualDisk, err), nil
	}
	if d.Mode != vpoolv1alpha1.DiskRO {
		// Defence in depth: the operator locked the disk for this host and
		// boot before it placed the VM here; a lock naming anything else
		// means another host may write it.
		l := vdi.Status.Lock
		switch {
		case l == nil:
			return disk, fmt.Sprintf("VirtualDisk %s is not locked for this host", vdi.Name), nil
		case l.Host != a.cfg.Host:
			return disk, fmt.Sprintf("VirtualDisk %s is locked RW by host %s", vdi.Name, l.Host), nil
		case l.BootID != a.cfg.BootID:
			return disk, fmt.Sprintf("VirtualDisk %s is locked for boot %s of this host, not this boot %s", vdi.Name, l.BootID, a.cfg.BootID), nil
		}
	}
	at, ok := plugged[vdi.Spec.StorageRepository]
	if !ok {
		return disk, fmt.Sprintf("SR %s of VirtualDisk %s is not reachable from this host", vdi.Spec.StorageRepository, vdi.Name), nil
	}
	if !at.attached {
		return disk, fmt.Sprintf("SR %s of VirtualDisk %s is not plugged: %s", at.name, vdi.Name, at.message), nil
	}
	plugger, real := a.cfg.Driver.(StoragePlugger)
	if !real {
		disk.Volume = vdi.Status.Volume
		return disk, "", nil
	}
	disk.StoragePool = at.storagePool
	key, took, notReady, err := volumeOf(ctx, plugger, vdi, at.storagePool)
	if err != nil || notReady != "" {
		return disk, notReady, err
	}
	disk.Volume = key
	if vdi.Status.Volume != key {
		patch := client.MergeFrom(vdi.DeepCopy())
		vdi.Status.Volume = key
		if err := a.client.Status().Patch(ctx, vdi, patch); err != nil {
			return disk, "", fmt.Errorf("recording the volume of VirtualDisk %s: %w", vdi.Name, err)
		}
		if took != "" {
			a.cfg.Log.Info(took, "host", a.cfg.Host, "vdi", vdi.Name, "storagePool", at.storagePool, "volume", key,
				"annotation", vdi.Annotations[vpoolv1alpha1.AnnotationVolume])
		}
	}
	return disk, "", nil
}

// VolumeName is the name of a VDI's volume in its SR's storage pool:
// <namespace>_<vdi>, as a VM's domain is <namespace>_<vm>, so that VDIs of
// one name in two namespaces whose SRs share a storage pool never share a
// volume. Neither a namespace nor a VDI name can hold "_".
func VolumeName(namespace, vdi string) string { return namespace + "_" + vdi }

// VolumeFinder is a StoragePlugger that finds a VDI's recorded volume again
// without creating one.
type VolumeFinder interface {
	// FindVolume returns the key of the volume of storagePool whose key is
	// key, else of the first of names there; ok is false when there is
	// none.
	FindVolume(ctx context.Context, storagePool, key string, names ...string) (found string, ok bool, err error)
}

// volumeOf is the key of vdi's volume in storagePool. A VDI with no
// status.volume and no vpoolv1alpha1.AnnotationVolume gets its volume,
// VolumeName, created with spec.size when missing. A VDI with one keeps it:
// the recorded key when storagePool holds it, else (the SR's storage
// restored elsewhere, the same names under new keys) the volume of its name
// there, VolumeName or, for a volume created before volumes were named
// after their namespace, whose key ends with it, the VDI's name; it never
// gets a new, empty volume. A VDI with no status.volume but the annotation
// (recreated by a restore or a recovery, maybe in another namespace or onto
// storage replicated elsewhere) takes the volume the annotation names, as
// it would a recorded one: by its key, else by the key's last element as a
// name (the volume's name where it was recorded: <namespace>_<vdi> of the
// namespace of origin, or the VDI's name), else, only when that volume is
// not in storagePool, the volume VolumeName if it is there; never a new
// one. With a driver that cannot look a volume up (no VolumeFinder) the
// recorded or annotated key is used as it is. notReady says why there is
// no volume yet; took, when not empty, says how a VDI without
// status.volume took the volume of its annotation (for the log).
func volumeOf(ctx context.Context, plugger StoragePlugger, vdi *vpoolv1alpha1.VirtualDisk, storagePool string) (
	key, took, notReady string, err error) {
	name := VolumeName(vdi.Namespace, vdi.Name)
	recorded, what := vdi.Status.Volume, "status.volume"
	names, fallback := []string{name}, ""
	switch backedUp := strings.TrimSpace(vdi.Annotations[vpoolv1alpha1.AnnotationVolume]); {
	case recorded != "":
		if path.Base(recorded) == vdi.Name {
			names = append(names, vdi.Name)
		}
	case backedUp != "":
		recorded, what = backedUp, "annotation "+vpoolv1alpha1.AnnotationVolume
		names = nil
		if base := path.Base(backedUp); base != "." && base != "/" {
			names = append(names, base)
		}
		if !slices.Contains(names, name) {
			fallback = name
		}
	default:
		key, err := plugger.EnsureVolume(ctx, storagePool, name, vdi.Spec.Size.Value())
		if err != nil {
			return "", "", "", fmt.Errorf("creating the volume of VirtualDisk %s in storage pool %s: %w", vdi.Name, storagePool, err)
		}
		return key, "", "", nil
	}
	finder, ok := plugger.(VolumeFinder)
	if !ok {
		return recorded, "", "", nil
	}
	lookupErr := func(err error) error {
		return fmt.Errorf("looking up the volume of VirtualDisk %s in storage pool %s: %w", vdi.Name, storagePool, err)
	}
	key, ok, err = finder.FindVolume(ctx, storagePool, recorded, names...)
	if err != nil {
		return "", "", "", lookupErr(err)
	}
	if ok && vdi.Status.Volume == "" {
		took = "VirtualDisk takes the volume its " + what + " names"
	}
	if !ok && fallback != "" {
		if key, ok, err = finder.FindVolume(ctx, storagePool, "", fallback); err != nil {
			return "", "", "", lookupErr(err)
		}
		took = fmt.Sprintf("VirtualDisk takes volume %s: the volume its %s names (%s) is not in storage pool %s",
			fallback, what, recorded, storagePool)
		names = append(names, fallback)
	}
	if !ok {
		return "", "", fmt.Sprintf("the volume of VirtualDisk %s (%s %s) is not in storage pool %s on this host, "+
			"nor a volume named %s: no new empty volume is made for a VDI that has one", vdi.Name, what, recorded, storagePool,
			strings.Join(names, " or ")), nil
	}
	return key, took, "", nil
}

// hostNetworks lists the networks this host offers: the driver's, or the
// sim driver's configured ones.
func (a *Agent) hostNetworks(ctx context.Context) ([]string, error) {
	nl, ok := a.cfg.Driver.(NetworkLister)
	if !ok {
		return nil, nil
	}
	nets, err := nl.Networks(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing networks: %w", err)
	}
	sort.Strings(nets)
	return nets, nil
}
