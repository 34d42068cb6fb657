package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// poolOf maps any pool-scoped object to its Pool.
func poolOf(_ context.Context, obj client.Object) []reconcile.Request {
	var name string
	switch o := obj.(type) {
	case *vpoolv1alpha1.Host:
		name = o.Spec.PoolRef.Name
	case *vpoolv1alpha1.StorageRepository:
		name = o.Spec.PoolRef.Name
	case *vpoolv1alpha1.VirtualDisk:
		name = o.Spec.PoolRef.Name
	case *vpoolv1alpha1.VirtualMachine:
		name = o.Spec.PoolRef.Name
	case *vpoolv1alpha1.PoolBackup:
		name = o.Spec.PoolRef.Name
	}
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}}}
}

// poolRefOf is the pool obj names in spec.poolRef.name.
func poolRefOf(obj client.Object) string {
	switch o := obj.(type) {
	case *vpoolv1alpha1.Host:
		return o.Spec.PoolRef.Name
	case *vpoolv1alpha1.StorageRepository:
		return o.Spec.PoolRef.Name
	case *vpoolv1alpha1.VirtualDisk:
		return o.Spec.PoolRef.Name
	case *vpoolv1alpha1.VirtualMachine:
		return o.Spec.PoolRef.Name
	case *vpoolv1alpha1.VirtualAppliance:
		return o.Spec.PoolRef.Name
	}
	return ""
}
