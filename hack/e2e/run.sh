#!/usr/bin/env bash
# End-to-end scenarios on real processes: the embedded control plane, the
# manager binary and one poolkeeper-agent process per host, driven only with
# kubectl and signals. Each scenario runs in its own namespace and prints its
# timings. Usage: hack/e2e/run.sh [scenario...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
work="${E2E_WORK:-$root/bin/e2e}"  # E2E_WORK: another directory, to run two at once
T=4s            # heartbeat timeout of the scenarios' pools
INTERVAL=1s     # agents' heartbeat interval (at most T/4)
WAIT=90s

log() { printf '%s e2e: %s\n' "$(date +%T)" "$*"; }
die() { log "FAIL: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n "${cp:-}" ]] && { kill -TERM "$cp" 2>/dev/null || true; wait "$cp" 2>/dev/null || true; }
}
trap cleanup EXIT

# free_port: a loopback TCP port nothing listens on.
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  die "no free port"
}

# The manager serves metrics as it does by default (HTTPS, every scrape
# authenticated and authorized by the API server), on a free loopback port.
start_control_plane() {
  rm -rf "$work" && mkdir -p "$work"
  local assets port
  assets="$(hack/envtest-toolchain.sh)"
  port=$(free_port)
  metrics_url="https://127.0.0.1:$port/metrics"
  bin/controlplane --assets "$assets" --crds config/crd/bases --dir "$work" -- \
    bin/poolkeeper --metrics-bind-address="127.0.0.1:$port" --health-probe-bind-address=0 >"$work/manager.log" 2>&1 &
  cp=$!
  for _ in $(seq 1 120); do [[ -s "$work/kubeconfig" ]] && break; sleep 0.5; done
  [[ -s "$work/kubeconfig" ]] || die "the control plane did not start (see $work/manager.log)"
  export KUBECONFIG="$work/kubeconfig"
  log "control plane up"
}

# scraper: a token for Prometheus' ServiceAccount, bound to config/rbac's
# poolkeeper-metrics-reader, in $metrics_token. A scrape without it is refused.
scraper() {
  [[ -n "${metrics_token:-}" ]] && return
  local code
  for _ in $(seq 1 60); do # the manager starts after the control plane
    code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 10 "$metrics_url") || true
    [[ "$code" != 000 ]] && break; sleep 0.5
  done
  [[ "$code" == 401 ]] || die "an anonymous scrape of $metrics_url got HTTP $code, not 401"
  kubectl apply -f config/rbac/metrics_reader_role.yaml >/dev/null
  kubectl create namespace e2e-prometheus >/dev/null
  kubectl create serviceaccount -n e2e-prometheus prometheus >/dev/null
  kubectl create clusterrolebinding e2e-prometheus --clusterrole=poolkeeper-metrics-reader \
    --serviceaccount=e2e-prometheus:prometheus >/dev/null
  metrics_token=$(kubectl create token -n e2e-prometheus prometheus --duration=1h)
}

# scrape: the manager's metrics in the text exposition format, as Prometheus
# fetches them.
scrape() {
  curl -sfk --max-time 10 -H "Authorization: Bearer $metrics_token" -H 'Accept: text/plain;version=0.0.4' "$metrics_url" ||
    die "scraping $metrics_url failed"
}

# metric TEXT SAMPLE: the value of one sample of a scrape (0 when absent).
metric() { awk -v s="$2" '$1 == s { v = $2 } END { print v + 0 }' <<<"$1"; }

# agent NS HOST [KUBECONFIG]: start a host agent process; its pid goes to
# $work/NS-HOST.pid. With HEARTBEAT_SR set, the agents of NS share the
# simulated storage $work/NS-storage (the heartbeat SR's statefile in it),
# or see it through $work/NS-HOST-storage when a scenario made that. Without
# KUBECONFIG the agent uses $work/NS-HOST.proxy.kubeconfig when a scenario
# made that (the API server through a proxy), else the run's.
agent() {
  local storage=() kc=${3:-$KUBECONFIG}
  [[ -z "${3:-}" && -s "$work/$1-$2.proxy.kubeconfig" ]] && kc="$work/$1-$2.proxy.kubeconfig"
  if [[ -n "${HEARTBEAT_SR:-}" ]]; then
    storage=(--sim-storage-dir "$work/$1-storage")
    [[ -e "$work/$1-$2-storage" ]] && storage=(--sim-storage-dir "$work/$1-$2-storage")
  fi
  # AGENT_METRICS=1: the agent serves its metrics on a free loopback port,
  # written to $work/NS-HOST.metrics-port (agent_metrics NS HOST reads them).
  if [[ -n "${AGENT_METRICS:-}" ]]; then
    free_port >"$work/$1-$2.metrics-port"
    storage+=(--metrics-bind-address "127.0.0.1:$(cat "$work/$1-$2.metrics-port")")
  fi
  # In a subshell, so the agent is not a job of this shell (no job notices).
  (KUBECONFIG="$kc" bin/poolkeeper-agent --namespace "$1" --host "$2" --driver sim --heartbeat-interval "$INTERVAL" \
    "${storage[@]}" >>"$work/$1-$2.log" 2>&1 & echo $! >"$work/$1-$2.pid")
  pids+=("$(cat "$work/$1-$2.pid")")
}
agent_pid() { cat "$work/$1-$2.pid"; }
agent_metrics() { curl -sf --max-time 5 "http://127.0.0.1:$(cat "$work/$1-$2.metrics-port")/metrics"; }

# agent_kubeconfig NS HOST: a kubeconfig for the agent's own ServiceAccount
# poolkeeper-agent-HOST (created with its RoleBinding), printed as a path.
agent_kubeconfig() {
  local ns=$1 host=$2 sa="poolkeeper-agent-$2" file="$work/$1-$2.kubeconfig"
  sed "s/poolkeeper-agent-xen-1/$sa/" config/agent/rolebinding.example.yaml | kubectl apply -n "$ns" -f - >/dev/null
  local server ca token
  server=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  token=$(kubectl create token "$sa" -n "$ns" --duration=1h)
  cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: $sa, user: {token: "$token"}}]
contexts: [{name: $sa, context: {cluster: e2e, user: $sa, namespace: $ns}}]
current-context: $sa
KC
  echo "$file"
}

# pool NS HA MASTER HOSTS...: a pool with a shared SR and hosts; with
# HEARTBEAT_SR=nfs that SR is the pool's heartbeat SR.
pool() {
  local ns=$1 ha=$2 master=$3; shift 3
  local hb=${HEARTBEAT_SR:+", heartbeatStorageRepository: $HEARTBEAT_SR"}
  kubectl create namespace "$ns" >/dev/null
  kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: Pool
metadata: {name: p}
spec: {ha: {enabled: $ha$hb}, heartbeatTimeout: $T, master: $master, defaultStorageRepository: nfs}
---
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: StorageRepository
metadata: {name: nfs}
spec: {poolRef: {name: p}, type: nfs, shared: true}
YAML
  for h in "$@"; do
    kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: Host
metadata: {name: $h}
spec: {poolRef: {name: p}, address: $h.example, capacity: {cpu: "16", memory: 64Gi}}
YAML
    if [[ -n "${AGENT_IDENTITY:-}" ]]; then agent "$ns" "$h" "$(agent_kubeconfig "$ns" "$h")"; else agent "$ns" "$h"; fi
  done
  for h in "$@"; do kubectl wait -n "$ns" vhost/"$h" --for=jsonpath='{.status.phase}'=Live --timeout=$WAIT >/dev/null; done
  kubectl wait -n "$ns" vpool/p --for=jsonpath='{.status.master}'="$master" --timeout=$WAIT >/dev/null
}

# vm NS NAME HOST [SPEC]: a Restart VM with a RW disk, preferring HOST;
# SPEC: more lines of its spec (YAML, indented by two spaces).
vm() {
  kubectl apply -n "$1" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: VirtualDisk
metadata: {name: $2-root}
spec: {poolRef: {name: p}, storageRepository: nfs, size: 10Gi}
---
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: VirtualMachine
metadata: {name: $2}
spec:
  poolRef: {name: p}
  powerState: Running
  resources: {cpu: "1", memory: 1Gi}
  disks: [{name: root, virtualDisk: $2-root}]
  affinity: {host: $3}
  ha: {restartPriority: Restart}${4:-}
YAML
}

running_on() { kubectl get -n "$1" vmachine "$2" -o jsonpath='{.status.powerState}/{.status.residentOn}'; }

# Samples of the manager's metrics that a recovery moves.
recovery_metrics=(
  'poolkeeper_fences_total{method="Agent",result="fenced"}'
  poolkeeper_host_detection_lag_seconds_count
  poolkeeper_vms_reset_total
  poolkeeper_vms_restarted_total
  poolkeeper_vm_recovery_duration_seconds_count
  'poolkeeper_vdi_locks_released_total{reason="HolderFenced"}'
)

scenario_member_dies_ha() {
  local ns=e2e-member-ha
  scraper
  pool "$ns" true h1 h1 h2 h3
  vm "$ns" a h2; vm "$ns" b h2
  kubectl wait -n "$ns" vmachine/a vmachine/b --for=jsonpath='{.status.residentOn}'=h2 --timeout=$WAIT >/dev/null
  kubectl wait -n "$ns" vmachine/a vmachine/b --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  local before; before=$(scrape)
  local t0; t0=$(now)
  kill -9 "$(agent_pid "$ns" h2)"
  kubectl wait -n "$ns" vhost/h2 --for=jsonpath='{.status.phase}'=Unreachable --timeout=$WAIT >/dev/null
  local detect; detect=$(since "$t0")
  kubectl wait -n "$ns" vhost/h2 --for=jsonpath='{.status.phase}'=Fenced --timeout=$WAIT >/dev/null
  local fence; fence=$(since "$t0")
  for v in a b; do
    for _ in $(seq 1 180); do
      case "$(running_on "$ns" $v)" in Running/h1|Running/h3) break ;; esac; sleep 0.5
    done
    [[ "$(running_on "$ns" $v)" =~ ^Running/h[13]$ ]] || die "VM $v did not restart elsewhere: $(running_on "$ns" $v)"
  done
  local recovered; recovered=$(since "$t0")
  # One fence, two VMs reset, restarted and their locks released: each
  # counter moved at least that much (a metric is counted just after the
  # status write that kubectl saw, so give it a moment).
  local after m moved want report=()
  for _ in $(seq 1 20); do
    after=$(scrape) report=() moved=true
    for m in "${recovery_metrics[@]}"; do
      want=2; [[ $m == poolkeeper_fences_total* || $m == poolkeeper_host_detection* ]] && want=1
      awk -v a="$(metric "$after" "$m")" -v b="$(metric "$before" "$m")" -v w=$want 'BEGIN { exit !(a - b >= w) }' || moved=false
      report+=("$m $(metric "$before" "$m") -> $(metric "$after" "$m")")
    done
    $moved && break; sleep 0.5
  done
  $moved || die "recovery metrics did not move as expected: $(printf '%s; ' "${report[@]}")"
  local mean
  mean=$(awk -v s1="$(metric "$after" poolkeeper_vm_recovery_duration_seconds_sum)" \
    -v s0="$(metric "$before" poolkeeper_vm_recovery_duration_seconds_sum)" \
    -v c1="$(metric "$after" poolkeeper_vm_recovery_duration_seconds_count)" \
    -v c0="$(metric "$before" poolkeeper_vm_recovery_duration_seconds_count)" 'BEGIN { printf "%.2fs", (s1 - s0) / (c1 - c0) }')
  log "member dies with HA on: Unreachable after $detect, Fenced after $fence, VMs running elsewhere after $recovered (timeout $T)"
  log "metrics from the manager's HTTPS endpoint (before -> after): $(printf '%s; ' "${report[@]}")mean VM recovery (reset to running) $mean"
}

scenario_master_dies_ha_off() {
  local ns=e2e-master-haoff
  pool "$ns" false h1 h1 h2 h3
  local t0; t0=$(now)
  kill -9 "$(agent_pid "$ns" h1)"
  kubectl wait -n "$ns" vpool/p --for=jsonpath='{.status.conditions[?(@.type=="MasterAvailable")].reason}'=MasterDown --timeout=$WAIT >/dev/null
  local detect; detect=$(since "$t0")
  kubectl patch -n "$ns" vpool p --type merge -p '{"spec":{"master":"h3"}}' >/dev/null
  kubectl wait -n "$ns" vpool/p --for=jsonpath='{.status.master}'=h3 --timeout=$WAIT >/dev/null
  [[ "$(kubectl get -n "$ns" vpool p -o jsonpath='{.status.epoch}')" == 2 ]] || die "epoch is not 2"
  kubectl wait -n "$ns" vpool/p --for=condition=MembersRecovered --timeout=$WAIT >/dev/null
  agent "$ns" h1
  kubectl wait -n "$ns" vhost/h1 --for=jsonpath='{.status.role}'=Member --timeout=$WAIT >/dev/null
  kubectl wait -n "$ns" vhost/h1 --for=jsonpath='{.status.masterEpoch}'=2 --timeout=$WAIT >/dev/null
  log "master dies with HA off: MasterDown after $detect; h3 master at epoch 2; old master back as member after $(since "$t0")"
}

scenario_short_pause() {
  local ns=e2e-pause
  pool "$ns" true h1 h1 h2 h3
  local pid; pid=$(agent_pid "$ns" h2)
  kill -STOP "$pid"; sleep 2; kill -CONT "$pid"
  sleep 6
  [[ "$(kubectl get -n "$ns" vhost h2 -o jsonpath='{.status.phase}')" == Live ]] || die "a 2s pause moved h2 out of Live"
  kubectl get -n "$ns" events --field-selector involvedObject.name=h2 -o jsonpath='{.items[*].reason}' | grep -q HeartbeatStale &&
    die "a 2s pause made h2 stale"
  log "agent paused 2s (timeout $T): stayed Live, never fenced"
}

scenario_delete_dead_host() {
  local ns=e2e-forget
  pool "$ns" false h1 h1 h2
  vm "$ns" a h2
  kubectl wait -n "$ns" vmachine/a --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  local t0; t0=$(now)
  kill -9 "$(agent_pid "$ns" h2)"
  kubectl wait -n "$ns" vhost/h2 --for=jsonpath='{.status.phase}'=Unreachable --timeout=$WAIT >/dev/null
  [[ "$(running_on "$ns" a)" == Running/h2 ]] || die "HA off: VM a left the Unreachable host: $(running_on "$ns" a)"
  kubectl delete -n "$ns" vhost h2 --wait=true --timeout=$WAIT >/dev/null
  kubectl wait -n "$ns" vmachine/a --for=jsonpath='{.status.residentOn}'=h1 --timeout=$WAIT >/dev/null
  kubectl wait -n "$ns" vmachine/a --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  log "kubectl delete host of a dead member: forgotten, its VM running on h1 after $(since "$t0")"
}

scenario_backup_restore() {
  local ns=e2e-restore
  pool "$ns" true h1 h1 h2
  vm "$ns" a h1; vm "$ns" b h2
  kubectl wait -n "$ns" vmachine/a vmachine/b --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  kubectl create secret generic -n "$ns" key --from-literal=key="$(head -c 48 /dev/urandom | base64 | head -c 48)" >/dev/null
  kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: PoolBackup
metadata: {name: b1}
spec: {poolRef: {name: p}, encryption: {keySecretRef: {name: key}}}
YAML
  local t0; t0=$(now)
  kubectl wait -n "$ns" pbak/b1 --for=jsonpath='{.status.phase}'=Completed --timeout=$WAIT >/dev/null
  local took; took=$(since "$t0")
  # The whole pool is lost: agents killed, every pool object deleted, the
  # Pool last: it waits for its hosts, which are forgotten once down.
  kill -9 "$(agent_pid "$ns" h1)" "$(agent_pid "$ns" h2)"
  kubectl delete -n "$ns" vmachine,vdi,sr --all --wait=true >/dev/null
  kubectl delete -n "$ns" vhost --all --wait=true --timeout=$WAIT >/dev/null
  kubectl delete -n "$ns" vpool/p --wait=true --timeout=$WAIT >/dev/null
  t0=$(now)
  # The restored pool names neither master nor default SR: it takes them from the backup.
  kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: Pool
metadata: {name: restored}
spec: {ha: {enabled: true}, heartbeatTimeout: $T, restoreFrom: {backupName: b1}}
YAML
  kubectl wait -n "$ns" vpool/restored --for=condition=Restored --timeout=$WAIT >/dev/null
  local restored; restored=$(since "$t0")
  local settings
  settings=$(kubectl get -n "$ns" vpool/restored -o jsonpath='{.status.restoredSettings.master} {.status.restoredSettings.defaultStorageRepository}')
  [[ $settings == "h1 nfs" ]] || die "the restore did not bring back master h1 and default SR nfs: restoredSettings '$settings'"
  agent "$ns" h1; agent "$ns" h2
  kubectl wait -n "$ns" vmachine/a vmachine/b --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  kubectl wait -n "$ns" vpool/restored --for=jsonpath='{.status.master}'=h1 --timeout=$WAIT >/dev/null
  log "backup in $took; pool lost and restored (master h1, default SR nfs from the backup) in $restored; VMs running again after $(since "$t0")"
}

scenario_agent_identity() {
  local ns=e2e-identity out
  kubectl apply -k config/agent >/dev/null
  sleep 2 # the policy takes effect asynchronously
  AGENT_IDENTITY=1 pool "$ns" true h1 h1 h2
  vm "$ns" a h1
  kubectl wait -n "$ns" vmachine/a --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  local h1kc="$work/$ns-h1.kubeconfig"
  kubectl --kubeconfig "$h1kc" annotate lease h1 e2e/check=own --overwrite >/dev/null ||
    die "the agent of h1 cannot write its own Lease"
  out=$(kubectl --kubeconfig "$h1kc" annotate lease h2 e2e/check=stolen --overwrite 2>&1) &&
    die "the agent of h1 renewed h2's Lease"
  grep -q "may renew only its own Lease" <<<"$out" || die "unexpected refusal: $out"
  local denied=${out##*: }
  kubectl --kubeconfig "$h1kc" annotate vhost h2 e2e/check=stolen --overwrite >/dev/null 2>&1 &&
    die "the agent of h1 wrote h2's Host"
  # Each agent reports its own attachment of the shared SR (pbd-plug).
  kubectl wait -n "$ns" sr/nfs --for=jsonpath='{.status.attachments[?(@.host=="h2")].attached}'=true --timeout=$WAIT >/dev/null ||
    die "h2's agent did not report its attachment of SR nfs"
  [[ "$(kubectl get -n "$ns" sr nfs -o jsonpath='{.status.attachments[?(@.host=="h1")].attached}')" == true ]] ||
    die "h1's attachment of SR nfs is missing: $(kubectl get -n "$ns" sr nfs -o jsonpath='{.status.attachments}')"
  out=$(kubectl --kubeconfig "$h1kc" patch -n "$ns" sr nfs --subresource=status --type=json \
    -p '[{"op":"replace","path":"/status/attachments/1/attached","value":false},{"op":"replace","path":"/status/attachments/0/attached","value":false}]' 2>&1) &&
    die "the agent of h1 rewrote h2's attachment"
  grep -q "may write only its own attachment" <<<"$out" || die "unexpected refusal: $out"
  out=$(kubectl --kubeconfig "$h1kc" patch -n "$ns" vdi a-root --subresource=status --type=merge \
    -p '{"status":{"lock":{"host":"h1","mode":"RW","bootID":"forged"}}}' 2>&1) && die "the agent of h1 wrote a VDI lock"
  grep -q "never its lock" <<<"$out" || die "unexpected refusal: $out"
  log "agents run as their own ServiceAccounts (both Live, a VM running, SR nfs attached on both); h1's agent may not renew h2's Lease: $denied"
}

# A second agent for a live host (another boot with the host's identity: a
# cloned host) runs none of its VMs while the first one runs; the Host says
# so, naming both boots. Once the first is gone (killed: its VMs die with
# it), the host is fenced, its VMs run elsewhere, and the second takes over.
scenario_second_agent() {
  local ns=e2e-second kc first second transitions
  kubectl apply -k config/agent >/dev/null
  sleep 2 # the policy takes effect asynchronously
  AGENT_IDENTITY=1 pool "$ns" true h1 h1 h2
  vm "$ns" a h2
  vm "$ns" b h2
  for v in a b; do
    kubectl wait -n "$ns" vmachine/$v --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  done
  [[ "$(running_on "$ns" a) $(running_on "$ns" b)" == "Running/h2 Running/h2" ]] || die "a and b do not run on h2"
  first=$(kubectl get -n "$ns" vhost h2 -o jsonpath='{.status.bootID}')
  transitions=$(kubectl get -n "$ns" lease h2 -o jsonpath='{.spec.leaseTransitions}')
  kc="$work/$ns-h2.kubeconfig"
  (KUBECONFIG="$kc" bin/poolkeeper-agent --namespace "$ns" --host h2 --driver sim --heartbeat-interval "$INTERVAL" \
    >>"$work/$ns-h2-second.log" 2>&1 & echo $! >"$work/$ns-h2-second.pid")
  pids+=("$(cat "$work/$ns-h2-second.pid")")
  kubectl wait -n "$ns" vhost/h2 --for=condition=AgentConflict --timeout=$WAIT >/dev/null ||
    die "the Host does not say that two agents claim it"
  second=$(sed -n 's/.*"bootID":"\([^"]*\)".*/\1/p' "$work/$ns-h2-second.log" | head -1)
  [[ -n "$second" && "$second" != "$first" ]] || die "the second agent's boot ID is not in its log"
  [[ "$(kubectl get -n "$ns" vhost h2 -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}')" == DuplicateAgent ]] ||
    die "h2 is Ready although two agents claim it"
  local msg
  for _ in $(seq 1 20); do
    msg=$(kubectl get -n "$ns" events --field-selector involvedObject.name=h2,reason=DuplicateAgent -o jsonpath='{.items[*].message}')
    [[ -n "$msg" ]] && break; sleep 0.5
  done
  [[ "$msg" == *"$first"* && "$msg" == *"$second"* ]] || die "no Warning event naming both boots: $msg"
  sleep 8 # two heartbeat timeouts: the second agent still runs nothing
  grep -q '"Started VM"' "$work/$ns-h2-second.log" && die "the second agent started a VM while the first ran"
  [[ "$(running_on "$ns" a) $(running_on "$ns" b)" == "Running/h2 Running/h2" ]] || die "the VMs moved while h2's first agent ran"
  [[ "$(kubectl get -n "$ns" lease h2 -o jsonpath='{.spec.leaseTransitions}')" == "$transitions" ]] ||
    die "the Lease holder flipped between the two agents"
  [[ "$(kubectl get -n "$ns" vhost h2 -o jsonpath='{.status.bootID}')" == "$first" ]] || die "the second agent reported over the first"

  local t0; t0=$(now)
  kill -9 "$(agent_pid "$ns" h2)" # the first host's power fails: its VMs die with it
  for v in a b; do
    kubectl wait -n "$ns" vmachine/$v --for=jsonpath='{.status.residentOn}'=h1 --timeout=$WAIT >/dev/null
    kubectl wait -n "$ns" vmachine/$v --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  done
  kubectl wait -n "$ns" lease/h2 --for=jsonpath='{.spec.holderIdentity}'="h2/$second" --timeout=$WAIT >/dev/null ||
    die "the second agent did not take over once the first was fenced"
  kubectl wait -n "$ns" vhost/h2 --for=jsonpath='{.status.phase}'=Live --timeout=$WAIT >/dev/null
  kubectl wait -n "$ns" vhost/h2 --for=condition=AgentConflict=false --timeout=$WAIT >/dev/null
  log "second agent for live h2: waited and ran nothing (AgentConflict, Warning naming $first and $second); first killed: VMs on h1 and the second agent took over $(since "$t0") later"
}

# refused NS FIELD WHAT KIND SPEC: kubectl apply of a KIND named bad with
# SPEC must fail, naming FIELD.
refused() {
  local ns=$1 field=$2 what=$3 kind=$4 spec=$5 out
  out=$(kubectl apply -n "$ns" -f - 2>&1 <<YAML || true
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: $kind
metadata: {name: bad}
spec: $spec
YAML
)
  grep -q "$field" <<<"$out" || die "$what was not refused naming $field: $out"
}

scenario_invalid_objects() {
  local ns=e2e-invalid
  kubectl create namespace "$ns" >/dev/null
  refused "$ns" spec.heartbeatTimeout "a zero heartbeatTimeout" Pool '{heartbeatTimeout: 0s}'
  refused "$ns" spec.host "a local SR without host" StorageRepository '{poolRef: {name: p}, type: lvm, shared: false}'
  refused "$ns" spec.disks "a VM naming one disk twice" VirtualMachine \
    '{poolRef: {name: p}, disks: [{name: root, virtualDisk: a}, {name: root, virtualDisk: b}]}'
  log "invalid objects refused by kubectl apply with the field named"
}

all=(invalid_objects short_pause member_dies_ha master_dies_ha_off delete_dead_host backup_restore agent_identity second_agent)
# More scenarios, by subject: each file defines scenario_<name> functions
# with the helpers above and appends their names to all.
for f in hack/e2e/scenarios/*.sh; do
  [[ -e "$f" ]] || continue
  # shellcheck source=/dev/null
  source "$f"
done
selected=("$@")
[[ ${#selected[@]} -gt 0 ]] || selected=("${all[@]}")
start_control_plane
passed=0
for s in "${selected[@]}"; do
  log "scenario $s"
  "scenario_$s"
  passed=$((passed + 1))
done
echo "e2e: $passed passed, 0 failed"
