package controllers

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

var errPoolNotFound = errors.New("pool not found")

// poolSnapshot is every object of one pool as of one etcd revision.
type poolSnapshot struct {
	revision string
	pool     *vpoolv1alpha1.Pool
	hosts    []vpoolv1alpha1.Host
	srs      []vpoolv1alpha1.StorageRepository
	vdis     []vpoolv1alpha1.VirtualDisk
	vms      []vpoolv1alpha1.VirtualMachine
	apps     []vpoolv1alpha1.VirtualAppliance
}

// readSnapshot reads a pool at one point in time: the first list is a quorum
// read from the API server, and every other list asks for exactly the
// revision it returned (resourceVersionMatch=Exact), which etcd serves from
// its history. No object can change between the first read and the last.
func readSnapshot(ctx context.Context, reader client.Reader, namespace, pool string) (*poolSnapshot, error) {
	pools := &vpoolv1alpha1.PoolList{}
	if err := reader.List(ctx, pools, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing pools: %w", err)
	}
	s := &poolSnapshot{revision: pools.ResourceVersion}
	for i := range pools.Items {
		if pools.Items[i].Name == pool {
			s.pool = &pools.Items[i]
		}
	}
	if s.pool == nil {
		return nil, fmt.Errorf("%w: %s/%s", errPoolNotFound, namespace, pool)
	}
	// Each List gets options of its own: the client fills in the Raw
	// ListOptions it is given, so one shared value would be written by all.
	at := func() *client.ListOptions {
		return &client.ListOptions{Namespace: namespace, Raw: &metav1.ListOptions{
			ResourceVersion: s.revision, ResourceVersionMatch: metav1.ResourceVersionMatchExact}}
	}
	hosts := &vpoolv1alpha1.HostList{}
	srs := &vpoolv1alpha1.StorageRepositoryList{}
	vdis := &vpoolv1alpha1.VirtualDiskList{}
	vms := &vpoolv1alpha1.VirtualMachineList{}
	apps := &vpoolv1alpha1.VirtualApplianceList{}
	// At one revision the lists are independent: read them at once.
	g, gctx := errgroup.WithContext(ctx)
	for _, l := range []client.ObjectList{hosts, srs, vdis, vms, apps} {
		g.Go(func() error {
			if err := reader.List(gctx, l, at()); err != nil {
				return fmt.Errorf("listing %T at revision %s: %w", l, s.revision, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, h := range hosts.Items {
		if h.Spec.PoolRef.Name == pool {
			s.hosts = append(s.hosts, h)
		}
	}
	for _, o := range srs.Items {
		if o.Spec.PoolRef.Name == pool {
			s.srs = append(s.srs, o)
		}
	}
	for _, o := range vdis.Items {
		if o.Spec.PoolRef.Name == pool {
			s.vdis = append(s.vdis, o)
		}
	}
	for _, o := range vms.Items {
		if o.Spec.PoolRef.Name == pool {
			s.vms = append(s.vms, o)
		}
	}
	for _, o := range apps.Items {
		if o.Spec.PoolRef.Name == pool {
			s.apps = append(s.apps, o)
		}
	}
	return s, nil
}
