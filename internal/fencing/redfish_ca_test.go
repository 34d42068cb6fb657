package fencing

import (
	"context"
	"strings"
	"testing"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/testutil/bmcsim"
)

// A BMC whose certificate a private CA signed is trusted through
// spec.fencing.redfish.caBundleSecretRef, and only then; a bundle without a
// certificate says so.
func TestRedfishPrivateCA(t *testing.T) {
	b := bmcsim.Start()
	defer b.Close()
	spec := func(ca bool) vpoolv1alpha1.HostFencing {
		rf := &vpoolv1alpha1.RedfishFencing{Endpoint: b.URL(), SystemID: bmcsim.DefaultSystemID,
			CredentialsSecretRef: vpoolv1alpha1.LocalObjectReference{Name: "bmc"}}
		if ca {
			rf.CABundleSecretRef = &vpoolv1alpha1.LocalObjectReference{Name: "bmc-ca"}
		}
		return vpoolv1alpha1.HostFencing{Method: vpoolv1alpha1.FencingRedfish, Redfish: rf}
	}
	// (fakeEnv returns one Secret for every name: the credentials and the CA.)
	secret := map[string][]byte{"username": []byte(bmcsim.DefaultUsername), "password": []byte(bmcsim.DefaultPassword),
		CABundleKey: b.CertificatePEM()}
	ctx := context.Background()

	r := Redfish{}.Readiness(ctx, &fakeEnv{secret: secret}, HostInput{Spec: spec(true)})
	if !r.Ready || r.Reason != ReasonBMCAnswers {
		t.Fatalf("with the CA bundle: %+v, want Ready, %s", r, ReasonBMCAnswers)
	}
	r = Redfish{}.Readiness(ctx, &fakeEnv{secret: secret}, HostInput{Spec: spec(false)})
	if r.Ready || r.Reason != ReasonBMCUnreachable || !strings.Contains(r.Message, "certificate") {
		t.Fatalf("without it: %+v, want not Ready, %s, about the certificate", r, ReasonBMCUnreachable)
	}
	secret[CABundleKey] = []byte("not a certificate")
	r = Redfish{}.Readiness(ctx, &fakeEnv{secret: secret}, HostInput{Spec: spec(true)})
	if r.Ready || !strings.Contains(r.Message, `has no PEM certificate in its "ca.crt" entry`) {
		t.Fatalf("with a bundle holding no certificate: %+v", r)
	}
}
