package controllers

import (
	"context"
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/agent/identity"
)

// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests,verbs=get;list;watch
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests/approval,verbs=update
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=signers,resourceNames=kubernetes.io/kube-apiserver-client,verbs=approve
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=hosts,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// CSRApproverReconciler approves, or denies with the reason, the
// CertificateSigningRequests of host agents (signer
// kubernetes.io/kube-apiserver-client, subject identity.Username): approved
// only when identity.Review passes for a Host that exists. It never signs:
// kube-controller-manager's signer issues approved certificates.
type CSRApproverReconciler struct {
	client.Client
	// APIReader reads the Host from the API server: a denial is final, so a
	// Host created a moment ago must not look missing from a stale cache.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
}

// SetupWithManager registers the reconciler for pending kube-apiserver-client
// requests only.
func (r *CSRApproverReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("csr-approver").
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			csr, ok := o.(*certificatesv1.CertificateSigningRequest)
			return ok && csr.Spec.SignerName == certificatesv1.KubeAPIServerClientSignerName && !csrDecided(csr)
		}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(conflictsRequeued(r))
}

// Reconcile reviews one pending request that claims an agent identity and
// records the verdict in its Approved or Denied condition, then an event.
func (r *CSRApproverReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	csr := &certificatesv1.CertificateSigningRequest{}
	if err := r.Get(ctx, req.NamespacedName, csr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := ctrl.LoggerFrom(ctx).WithValues("CertificateSigningRequest", klog.KObj(csr))
	if csrDecided(csr) {
		return ctrl.Result{}, nil
	}
	in := identity.Request{SignerName: csr.Spec.SignerName, Username: csr.Spec.Username, Groups: csr.Spec.Groups,
		Usages: csr.Spec.Usages, PEM: csr.Spec.Request}
	namespace, name, ours := identity.Claim(in)
	if !ours {
		return ctrl.Result{}, nil
	}
	state, err := r.hostState(ctx, namespace, name)
	if err != nil {
		return ctrl.Result{}, err
	}
	v := identity.Review(in, state)
	condition := certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateDenied,
		Status: corev1.ConditionTrue, Reason: v.Reason, Message: v.Message,
		LastUpdateTime: metav1.NewTime(r.Clock.Now()), LastTransitionTime: metav1.NewTime(r.Clock.Now())}
	eventType := corev1.EventTypeWarning
	if v.Approve {
		condition.Type, eventType = certificatesv1.CertificateApproved, corev1.EventTypeNormal
	}
	csr.Status.Conditions = append(csr.Status.Conditions, condition)
	if err := r.SubResource("approval").Update(ctx, csr); err != nil {
		return ctrl.Result{}, fmt.Errorf("recording %s of CertificateSigningRequest %s: %w", condition.Type, csr.Name, err)
	}
	log.Info("Agent certificate request "+string(condition.Type), "reason", v.Reason, "message", v.Message)
	r.Recorder.Eventf(csr, nil, eventType, v.Reason, string(condition.Type), "%s", v.Message)
	return ctrl.Result{}, nil
}

// hostState reads the Host a request names, from the API server.
func (r *CSRApproverReconciler) hostState(ctx context.Context, namespace, name string) (identity.HostState, error) {
	if namespace == "" || name == "" {
		return identity.HostMissing, nil
	}
	host := &vpoolv1alpha1.Host{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, host)
	switch {
	case apierrors.IsNotFound(err):
		return identity.HostMissing, nil
	case err != nil:
		return 0, fmt.Errorf("reading Host %s/%s: %w", namespace, name, err)
	case host.DeletionTimestamp != nil || host.Spec.State == vpoolv1alpha1.HostForgotten:
		return identity.HostForgotten, nil
	}
	return identity.HostActive, nil
}

// csrDecided: approved or denied already (by anyone), or already signed.
func csrDecided(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied {
			return true
		}
	}
	return len(csr.Status.Certificate) > 0
}
