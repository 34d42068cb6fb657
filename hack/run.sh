#!/usr/bin/env bash
# make run: the operator in the foreground.
#  - KUBECONFIG unset: on an embedded control plane (etcd + kube-apiserver built
#    by hack/envtest-toolchain.sh and cached outside the repository), with the
#    CRDs installed and an admin kubeconfig at bin/embedded/kubeconfig.
#  - KUBECONFIG set: installs the CRDs into that cluster and runs against it
#    with leader election on (Lease poolkeeper.vpool.poolkeeper.io in
#    LEADER_ELECTION_NAMESPACE, default poolkeeper-system, the namespace of
#    `make deploy`), so it waits while an in-cluster manager leads instead of
#    fighting it. ARGS='--leader-elect=false' turns that off.
# A run killed with SIGKILL (even this script or make) leaves processes that
# the next run stops: bin/controlplane records them in bin/embedded/*.pid.
# Extra manager flags: make run ARGS='--zap-log-level=debug'.
set -euo pipefail
cd "$(dirname "$0")/.."

# Local runs serve metrics over plain HTTP on :8080 unless told otherwise.
args=(--metrics-bind-address="${METRICS_ADDR:-:8080}" --metrics-secure=false --health-probe-bind-address="${PROBE_ADDR:-:8081}" "$@")

# The kubeconfig of an earlier embedded run (exported as make demo suggests)
# names no cluster of its own: start the embedded control plane again.
if [[ "${KUBECONFIG:-}" == "$PWD/bin/embedded/kubeconfig" ]]; then
  echo "run: KUBECONFIG is the embedded control plane's own kubeconfig: starting the embedded control plane" >&2
  unset KUBECONFIG
fi

if [[ -n "${KUBECONFIG:-}" ]]; then
  echo "run: installing CRDs into the cluster of KUBECONFIG=$KUBECONFIG" >&2
  kubectl apply --server-side --force-conflicts -f config/crd/bases >&2
  if [[ " $* " != *" --leader-elect"* ]]; then
    ns="${LEADER_ELECTION_NAMESPACE:-poolkeeper-system}"
    kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns" >&2
    echo "run: leader election on (Lease poolkeeper.vpool.poolkeeper.io in namespace $ns): this manager reconciles only while no other one (such as a deployed operator) holds it" >&2
    args+=(--leader-elect=true --leader-election-namespace="$ns")
  fi
  exec bin/poolkeeper "${args[@]}"
fi

assets="$(hack/envtest-toolchain.sh)"
mkdir -p bin/embedded
# The control plane runs in its own session so that Ctrl-C reaches only this
# script, which then stops the manager first and the control plane after it.
setsid bin/controlplane --assets "$assets" --crds "$PWD/config/crd/bases" --dir "$PWD/bin/embedded" -- "$PWD/bin/poolkeeper" "${args[@]}" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
# wait returns early when a trapped signal arrives; wait until the exit.
while kill -0 "$pid" 2>/dev/null; do wait "$pid" || true; done
status=0
wait "$pid" || status=$?
exit "$status"
