# shellcheck shell=bash disable=SC2154 # work, T, WAIT, pids are run.sh's
# Processes of the control plane killed (SIGKILL), as a crash or an OOM kill
# does: bin/controlplane starts each again, as a cluster's supervisor would
# (invariants 5 and 8). Sourced by hack/e2e/run.sh; uses outage.sh's
# cp_pid, outage_pool and outage_unharmed.

# restarted NAME OLD: wait until the control plane's NAME (etcd,
# kube-apiserver or manager) runs again under a pid other than OLD, and
# kubectl gets answers; how long that took goes to $back.
restarted() {
  local t0 pid=""; t0=$(now)
  for _ in $(seq 1 240); do
    pid=$(cat "$work/$1.pid" 2>/dev/null) || true
    [[ -n $pid && $pid != "$2" && -d /proc/$pid ]] && kubectl get namespace default >/dev/null 2>&1 && break
    sleep 0.25
  done
  [[ -n $pid && $pid != "$2" && -d /proc/$pid ]] || die "$1 was not started again after a kill -9 (pid file: '$pid')"
  back=$(since "$t0")
}

# manager_pid: this run's manager, checked to be bin/poolkeeper.
manager_pid() {
  local pid
  pid=$(cat "$work/manager.pid" 2>/dev/null) || die "no $work/manager.pid"
  [[ "$(basename "$(readlink "/proc/$pid/exe")")" == poolkeeper ]] || die "pid $pid is not this run's manager"
  echo "$pid"
}

# etcd, kube-apiserver and the manager each killed with SIGKILL under a
# running HA pool with a heartbeat SR: each is started again, the cluster's
# objects are all there, no VM stops and no host is fenced.
scenario_control_plane_killed() {
  local ns=e2e-killed T=10s INTERVAL=1s HEARTBEAT_SR=nfs back name old report=() n0 n1
  outage_pool "$ns"
  n0=$(kubectl get -n "$ns" vpool,vhost,vmachine,vdi,sr -o name | wc -l)
  for name in etcd kube-apiserver manager; do
    if [[ $name == manager ]]; then old=$(manager_pid); else old=$(cp_pid "$name"); fi
    kill -9 "$old"
    restarted "$name" "$old"
    report+=("$name back in $back")
  done
  n1=$(kubectl get -n "$ns" vpool,vhost,vmachine,vdi,sr -o name | wc -l)
  [[ $n1 == "$n0" ]] || die "the pool's objects changed across the kills: $n0 before, $n1 after"
  # A whole safe time for the restarted manager, which counts every host's
  # silence afresh, to (wrongly) fence anyone.
  sleep $(($(secs $T) * 3 / 2 + 1))
  outage_unharmed "$ns" "after etcd, kube-apiserver and the manager were killed"
  log "control plane killed part by part (timeout $T, heartbeat SR): $(IFS=,; echo "${report[*]}" | sed 's/,/, /g'); $n1 objects kept; 0 VMs stopped, 0 hosts fenced, a b c still on h1 h2 h3; Host events: $host_reasons"
}

# A host dies, and the manager is killed twice in the middle of its
# recovery: once the host is Unreachable (before the fence), again once it
# is Fenced (while its VMs are reset and restarted). The manager started
# again resumes from the objects' status: the host is fenced once, each VM
# runs again on one other host, and no VM is ever recorded Running on two.
scenario_manager_killed_mid_recovery() {
  local ns=e2e-manager-killed back old t0 v at fences
  pool "$ns" true h1 h1 h2 h3
  vm "$ns" a h2; vm "$ns" b h2
  kubectl wait -n "$ns" vmachine/a vmachine/b --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  [[ "$(running_on "$ns" a) $(running_on "$ns" b)" == "Running/h2 Running/h2" ]] || die "a b do not run on h2"
  # Every change of a VM's resident host and power state, from a watch.
  kubectl get -n "$ns" vmachine -w --output-watch-events \
    -o jsonpath='{.type} {.object.metadata.name} {.object.status.powerState} {.object.status.residentOn}{"\n"}' \
    >"$work/$ns-vms.watch" 2>&1 &
  pids+=($!)
  t0=$(now)
  kill -9 "$(agent_pid "$ns" h2)"
  kubectl wait -n "$ns" vhost/h2 --for=jsonpath='{.status.phase}'=Unreachable --timeout=$WAIT >/dev/null
  old=$(manager_pid); kill -9 "$old"; restarted manager "$old"
  local first=$back
  kubectl wait -n "$ns" vhost/h2 --for=jsonpath='{.status.phase}'=Fenced --timeout=$WAIT >/dev/null
  local fenced; fenced=$(since "$t0")
  old=$(manager_pid); kill -9 "$old"; restarted manager "$old"
  for v in a b; do
    for _ in $(seq 1 180); do
      at=$(running_on "$ns" $v)
      [[ $at == Running/h1 || $at == Running/h3 ]] && break
      sleep 0.5
    done
    [[ $at == Running/h1 || $at == Running/h3 ]] || die "VM $v did not run again elsewhere after the manager was killed twice: $at"
  done
  local recovered; recovered=$(since "$t0")
  sleep 2
  for v in a b; do
    at=$(running_on "$ns" $v)
    [[ $at == Running/h1 || $at == Running/h3 ]] || die "VM $v moved again: $at"
  done
  # The watch never saw a VM Running on h2 after it was Running elsewhere,
  # nor Running on two hosts in a row without a reset between.
  awk '$1 == "MODIFIED" || $1 == "ADDED" { vm = $2; st = $3; on = $4
         if (st == "Running") { if (run[vm] != "" && run[vm] != on) { print "VM " vm " Running on " run[vm] " then on " on; bad = 1 }; run[vm] = on }
         else run[vm] = "" }
       END { exit bad }' "$work/$ns-vms.watch" ||
    die "a VM was recorded Running on two hosts without a stop between (see $work/$ns-vms.watch)"
  # (the managers' log: every phase change, both restarts included)
  fences=$(grep '"Host phase changed"' "$work/manager.log" | grep "\"namespace\":\"$ns\"" | grep '"name":"h2"' |
    grep -c '"to":"Fenced"' || true)
  ((fences == 1)) || die "h2 went Fenced $fences times, not once (see $work/manager.log)"
  log "manager killed twice in a recovery (Unreachable, then Fenced; back in $first and $back): h2 Fenced after $fenced, a b Running on $(running_on "$ns" a | cut -d/ -f2) $(running_on "$ns" b | cut -d/ -f2) after $recovered (timeout $T); no VM recorded Running on two hosts"
}

all+=(control_plane_killed manager_killed_mid_recovery)

# The manager paused (SIGSTOP) for 5T while every agent renews, then
# resumed: its timers fire before its cache has seen the renewals made
# meanwhile, and it must not take those hosts for silent: no host leaves
# Live, no VM moves.
scenario_manager_paused() {
  local ns=e2e-manager-paused pid v f=20 moved
  pool "$ns" true h1 h1 h2 h3
  vm "$ns" a h1; vm "$ns" b h2; vm "$ns" c h3
  for v in a b c; do
    kubectl wait -n "$ns" vmachine/$v --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  done
  kubectl get -n "$ns" vhost -w --output-watch-events -o jsonpath='{.type} {.object.metadata.name} {.object.status.phase}{"\n"}' \
    >"$work/$ns-hosts.watch" 2>&1 &
  pids+=($!)
  pid=$(manager_pid)
  kill -STOP "$pid"
  sleep $f
  kill -CONT "$pid"
  sleep 8 # two safe times (T + T/2) of the resumed manager
  if grep -v ' Live$' "$work/$ns-hosts.watch" | grep -q 'MODIFIED'; then
    die "a Host left Live after the manager's ${f}s pause: $(grep -v ' Live$' "$work/$ns-hosts.watch" | grep MODIFIED | head -n 3 | paste -sd';')"
  fi
  moved=""
  for v in a:h1 b:h2 c:h3; do
    [[ "$(running_on "$ns" "${v%%:*}")" == "Running/${v#*:}" ]] || moved+=" ${v%%:*}: $(running_on "$ns" "${v%%:*}")"
  done
  [[ -z $moved ]] || die "VMs moved after the manager's pause:$moved"
  grep -q '"This operator did not run for a while' "$work/manager.log" ||
    die "the resumed manager did not log its own stall (see $work/manager.log)"
  log "manager paused ${f}s (timeout $T) and resumed: every Host stayed Live, a b c still on h1 h2 h3"
}

all+=(manager_paused)
