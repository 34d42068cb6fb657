package controllers

import (
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

// backupStore is the store spec.storage of the backup names: Secrets in its
// namespace (the default) or an S3-compatible bucket.
func backupStore(c client.Client, reader client.Reader, pb *vpoolv1alpha1.PoolBackup) backup.Store {
	if pb.Spec.Storage.Type == vpoolv1alpha1.StorageS3 {
		return &backup.S3Store{Reader: reader}
	}
	return &backup.SecretStore{Client: c, Reader: reader}
}
