package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

// backupStore is the store spec.storage of the backup names: Secrets in its
// namespace (the default), an S3-compatible bucket, or a BackupLocation.
func backupStore(c client.Client, reader client.Reader, pb *vpoolv1alpha1.PoolBackup) backup.Store {
	switch pb.Spec.Storage.Type {
	case vpoolv1alpha1.StorageS3:
		return &backup.S3Store{Reader: reader}
	case vpoolv1alpha1.StorageLocation:
		return &backup.LocationStore{Reader: reader}
	}
	return &backup.SecretStore{Client: c, Reader: reader}
}

// backupKey reads the key material of a backup from the Secret named by
// spec.encryption.keySecretRef: its passphrase (`key`), or its age
// recipients and identities. No key, no backup.
func backupKey(ctx context.Context, reader client.Reader, namespace, name string) (backup.Keys, error) {
	s := &corev1.Secret{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return backup.Keys{}, fmt.Errorf("spec.encryption.keySecretRef: Secret %q not found: %w", name, err)
		}
		return backup.Keys{}, err
	}
	return backup.ParseKeys(s.Data, fmt.Sprintf("spec.encryption.keySecretRef: Secret %q", name))
}
