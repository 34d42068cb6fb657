# shellcheck shell=bash
# Control-plane outages (DESIGN.md "Control-plane outages", invariant 9): an
# HA pool with a heartbeat SR rides out an API server outage longer than its
# heartbeat timeout with no VM stopped and no host fenced. Sourced by
# hack/e2e/run.sh.

# apiserver_pid: the kube-apiserver of this run's control plane, from the
# pid file bin/controlplane keeps in the work directory.
apiserver_pid() {
  local pid
  pid=$(cat "$work/kube-apiserver.pid" 2>/dev/null) || die "no $work/kube-apiserver.pid"
  [[ "$(basename "$(readlink "/proc/$pid/exe")")" == kube-apiserver ]] || die "pid $pid is not this run's kube-apiserver"
  echo "$pid"
}

# outage_pool NS: an HA pool of h1 h2 h3 with heartbeat SR nfs and a 20s
# timeout, VMs a b c running on h1 h2 h3.
outage_pool() {
  local ns=$1 v h
  pool "$ns" true h1 h1 h2 h3
  vm "$ns" a h1; vm "$ns" b h2; vm "$ns" c h3
  for v in a b c; do
    kubectl wait -n "$ns" vmachine/$v --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  done
  [[ "$(running_on "$ns" a) $(running_on "$ns" b) $(running_on "$ns" c)" == "Running/h1 Running/h2 Running/h3" ]] ||
    die "a b c do not run on h1 h2 h3: $(running_on "$ns" a) $(running_on "$ns" b) $(running_on "$ns" c)"
  kubectl wait -n "$ns" vpool/p --for=condition=HeartbeatStorage --timeout=$WAIT >/dev/null ||
    die "the Pool's HeartbeatStorage is not True: $(kubectl get -n "$ns" vpool p -o jsonpath='{.status.conditions[?(@.type=="HeartbeatStorage")].message}')"
  for h in h1 h2 h3; do
    grep -q '"Statefile on the heartbeat SR"' "$work/$ns-$h.log" || die "$h's agent has no statefile (see $work/$ns-$h.log)"
  done
}

# outage_unharmed NS WHAT: every VM still Running on its host, every agent
# still running without a self-fence, no Host ever Fencing or Fenced (the
# manager logs every phase change). The Hosts' event reasons go to
# $host_reasons.
outage_unharmed() {
  local ns=$1 what=$2 h v want fenced
  for h in h1 h2 h3; do
    kill -0 "$(agent_pid "$ns" $h)" 2>/dev/null || die "$what: $h's agent exited (see $work/$ns-$h.log)"
    grep -q 'stopping every VM' "$work/$ns-$h.log" && die "$what: $h's agent self-fenced: $(grep 'stopping every VM' "$work/$ns-$h.log")"
    grep -q '"Stopped VM"' "$work/$ns-$h.log" && die "$what: $h's agent stopped a VM"
  done
  for v in a:h1 b:h2 c:h3; do
    want="Running/${v#*:}"
    [[ "$(running_on "$ns" "${v%%:*}")" == "$want" ]] || die "$what: VM ${v%%:*} is $(running_on "$ns" "${v%%:*}"), not $want"
  done
  fenced=$(grep '"Host phase changed"' "$work/manager.log" | grep "\"namespace\":\"$ns\"" | grep -E '"to":"Fenc(ing|ed)"' |
    grep -o '"name":"h[0-9]*","Host".*' | sed 's/"reconcileID":"[^"]*",//' || true)
  [[ -z "$fenced" ]] || die "$what: a Host left Live for Fencing: $fenced"
  host_reasons=$(kubectl get -n "$ns" events -o jsonpath='{range .items[?(@.involvedObject.kind=="Host")]}{.reason}{"\n"}{end}' | sort -u | tr '\n' ' ')
  grep -Eq 'Fenc|Reset' <<<"$host_reasons" && die "$what: Host events say a host was fenced: $host_reasons"
  for h in h1 h2 h3; do
    [[ "$(kubectl get -n "$ns" vhost $h -o jsonpath='{.status.phase}')" == Live ]] || die "$what: $h is not Live"
  done
}

# The kube-apiserver frozen (SIGSTOP) for 35s, longer than the pool's 20s
# heartbeat timeout, then resumed: no VM stops, no host is fenced.
scenario_outage_api_freeze() {
  local ns=e2e-outage-api T=20s INTERVAL=1s HEARTBEAT_SR=nfs freeze=35 pid t0
  outage_pool "$ns"
  pid=$(apiserver_pid)
  t0=$(now)
  kill -STOP "$pid"
  sleep $freeze
  kill -CONT "$pid"
  for _ in $(seq 1 60); do kubectl get -n "$ns" vpool p >/dev/null 2>&1 && break; sleep 0.5; done
  local back; back=$(since "$t0")
  # The operator counts every host's silence afresh after the outage: give
  # it a whole timeout to (wrongly) fence anyone.
  sleep 25
  outage_unharmed "$ns" "after a ${freeze}s API server freeze"
  local granted
  granted=$(cat "$work/$ns"-h?.log | grep -c '"Outage exemption granted' || true)
  [[ $granted -ge 3 ]] || die "the agents did not say they rode out the outage on the statefile ($granted exemptions granted)"
  log "API server frozen ${freeze}s (timeout $T, heartbeat SR): answering again after $back; 0 VMs stopped, 0 hosts fenced, a b c still on h1 h2 h3; $granted exemptions granted; Host events: $host_reasons"
}

all+=(outage_api_freeze)
