package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// poolObjects is what the commands read of one pool: the Pool and the
// objects of its namespace that name it, each list sorted by name.
type poolObjects struct {
	pool    *vpoolv1alpha1.Pool
	hosts   []vpoolv1alpha1.Host
	leases  map[string]*coordinationv1.Lease // by host name
	vms     []vpoolv1alpha1.VirtualMachine
	vdis    []vpoolv1alpha1.VirtualDisk
	backups []vpoolv1alpha1.PoolBackup
}

// readPool reads a pool and its hosts (with their heartbeat Leases), VMs,
// VDIs and PoolBackups.
func readPool(ctx context.Context, c client.Client, ns, name string) (*poolObjects, error) {
	pool, err := getPool(ctx, c, ns, name)
	if err != nil {
		return nil, err
	}
	po := &poolObjects{pool: pool, leases: map[string]*coordinationv1.Lease{}}
	in := client.InNamespace(ns)
	var hosts vpoolv1alpha1.HostList
	var vms vpoolv1alpha1.VirtualMachineList
	var vdis vpoolv1alpha1.VirtualDiskList
	var backups vpoolv1alpha1.PoolBackupList
	var leases coordinationv1.LeaseList
	for _, l := range []client.ObjectList{&hosts, &vms, &vdis, &backups, &leases} {
		if err := c.List(ctx, l, in); err != nil {
			return nil, fmt.Errorf("listing %T in namespace %s: %w", l, ns, err)
		}
	}
	po.hosts = slices.DeleteFunc(hosts.Items, func(h vpoolv1alpha1.Host) bool { return h.Spec.PoolRef.Name != name })
	po.vms = slices.DeleteFunc(vms.Items, func(v vpoolv1alpha1.VirtualMachine) bool { return v.Spec.PoolRef.Name != name })
	po.vdis = slices.DeleteFunc(vdis.Items, func(d vpoolv1alpha1.VirtualDisk) bool { return d.Spec.PoolRef.Name != name })
	po.backups = slices.DeleteFunc(backups.Items, func(b vpoolv1alpha1.PoolBackup) bool { return b.Spec.PoolRef.Name != name })
	slices.SortFunc(po.hosts, func(a, b vpoolv1alpha1.Host) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(po.vms, func(a, b vpoolv1alpha1.VirtualMachine) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(po.vdis, func(a, b vpoolv1alpha1.VirtualDisk) int { return strings.Compare(a.Name, b.Name) })
	for i := range leases.Items {
		po.leases[leases.Items[i].Name] = &leases.Items[i]
	}
	return po, nil
}

// host is the pool's host of that name, nil when there is none.
func (po *poolObjects) host(name string) *vpoolv1alpha1.Host {
	for i := range po.hosts {
		if po.hosts[i].Name == name {
			return &po.hosts[i]
		}
	}
	return nil
}

// vmsOn are the VMs the operator records on a host (status.residentOn).
func (po *poolObjects) vmsOn(host string) []vpoolv1alpha1.VirtualMachine {
	var out []vpoolv1alpha1.VirtualMachine
	for _, vm := range po.vms {
		if vm.Status.ResidentOn == host {
			out = append(out, vm)
		}
	}
	return out
}

// locksOf are the VDIs whose RW lock a host holds.
func (po *poolObjects) locksOf(host string) []vpoolv1alpha1.VirtualDisk {
	var out []vpoolv1alpha1.VirtualDisk
	for _, d := range po.vdis {
		if d.Status.Lock != nil && d.Status.Lock.Host == host {
			out = append(out, d)
		}
	}
	return out
}

// poolOfHost reads a Host and the pool it names.
func poolOfHost(ctx context.Context, c client.Client, ns, host string) (*poolObjects, *vpoolv1alpha1.Host, error) {
	h := &vpoolv1alpha1.Host{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: host}, h); err != nil {
		return nil, nil, fmt.Errorf("reading Host %s/%s: %w", ns, host, err)
	}
	po, err := readPool(ctx, c, ns, h.Spec.PoolRef.Name)
	if err != nil {
		return nil, nil, err
	}
	if fresh := po.host(host); fresh != nil {
		h = fresh
	}
	return po, h, nil
}
