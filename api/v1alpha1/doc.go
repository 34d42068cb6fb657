// Package v1alpha1 holds the vpool.poolkeeper.io/v1alpha1 API: Pool, Host,
// StorageRepository, VirtualDisk, VirtualMachine and PoolBackup.
//
// The names in this package (kinds, fields, enum values, phases, condition types)
// are a contract with users and GitOps repositories; see DESIGN.md.
//
// +kubebuilder:object:generate=true
// +groupName=vpool.poolkeeper.io
package v1alpha1
