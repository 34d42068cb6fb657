#!/usr/bin/env bash
# make run: the operator in the foreground.
#  - KUBECONFIG unset: on an embedded control plane (etcd + kube-apiserver built
#    by hack/envtest-toolchain.sh and cached outside the repository), with the
#    CRDs installed and an admin kubeconfig at bin/embedded/kubeconfig.
#  - KUBECONFIG set: installs the CRDs into that cluster and runs against it.
# Extra manager flags: make run ARGS='--zap-log-level=debug'.
set -euo pipefail
cd "$(dirname "$0")/.."

# Local runs serve metrics over plain HTTP on :8080 unless told otherwise.
args=(--metrics-bind-address="${METRICS_ADDR:-:8080}" --metrics-secure=false --health-probe-bind-address="${PROBE_ADDR:-:8081}" "$@")

if [[ -n "${KUBECONFIG:-}" ]]; then
  echo "run: installing CRDs into the cluster of KUBECONFIG=$KUBECONFIG" >&2
  kubectl apply --server-side --force-conflicts -f config/crd/bases >&2
  exec bin/poolkeeper "${args[@]}"
fi

assets="$(hack/envtest-toolchain.sh)"
mkdir -p bin/embedded
# The control plane runs in its own session so that Ctrl-C reaches only this
# script, which then stops the manager first and the control plane after it.
setsid bin/controlplane --assets "$assets" --crds config/crd/bases --dir bin/embedded -- bin/poolkeeper "${args[@]}" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
# wait returns early when a trapped signal arrives; wait until the exit.
while kill -0 "$pid" 2>/dev/null; do wait "$pid" || true; done
status=0
wait "$pid" || status=$?
exit "$status"
