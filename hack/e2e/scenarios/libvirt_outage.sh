# shellcheck shell=bash disable=SC2154 # work, WAIT, pids and lv_* are run.sh's and libvirt.sh's
# Control-plane outages with the libvirt driver (DESIGN.md "Control-plane
# outages", invariant 9): the outage scenarios of outage.sh on real QEMU
# guests, the heartbeat SR's statefile in the SR's libvirt storage pool
# (shared, one directory every simulated host sees). Uses the helpers of
# libvirt.sh (lv_*) and outage.sh (freeze, granted, secs, proxied, proxy_pid, log_ts,
# epoch). Never skipped: without KVM the guests run under QEMU TCG.
#
# One pool of three hosts, T = $LV_T, guests a b c on h1 h2 h3, in turn:
# the API server frozen 2T, etcd frozen 2T, the API server frozen 5T (past
# every self-fence deadline and watchdog bound an exemption would not
# extend): each ridden out, no domain stopped or started again, nobody
# fenced. Then h2 cut off from the API server alone (its TCP proxy cut),
# and h3 cut off from both the API server and the statefile: each
# self-fences, its domains destroyed, is fenced, and its guests boot
# elsewhere; a monitor of every daemon's domains every 100 ms never sees a
# VM on two hosts, and every guest's disk shows one writer at a time.

# lv_statefile NS: the directory of the pool's statefile, in the target of
# the storage pool shared (one subdirectory per pool: NS_p).
lv_statefile() { echo "$lv_root/shared/images/.poolkeeper-statefile/${1}_p"; }

# lv_outage_view NS: h3's storage pool shared is redefined (before its agent
# starts) on a view of its own, $lv_root/NS-h3-view/shared, a symlink to the
# shared directory: re-pointed at a directory that does not exist, h3 alone
# loses the statefile, as on a dead mount (its running guests keep the
# files they hold open).
lv_outage_view() {
  local ns=$1 view="$lv_root/$1-h3-view"
  mkdir -p "$view"
  ln -sfn "$lv_root/shared/images" "$view/shared"
  lv_virsh "$ns" h3 pool-destroy shared >/dev/null
  lv_virsh "$ns" h3 pool-undefine shared >/dev/null
  lv_virsh "$ns" h3 pool-define-as shared dir --target "$view/shared" >/dev/null
  lv_virsh "$ns" h3 pool-start shared >/dev/null
}

# lv_ridden_out NS WHAT IDS GRANTED: after an outage, a whole safe time
# (T + T/2) for the operator, which counts every host's silence afresh, to
# (wrongly) fence anyone; then: every agent runs without a self-fence and
# stopped nothing, every host's domains are those of IDS (the same domain
# IDs and QEMU pids: nothing stopped or started again), every VM still on
# its host, no Host ever left Live for Fencing, and the agents granted more
# exemptions than GRANTED.
lv_ridden_out() {
  local ns=$1 what=$2 ids=$3 granted0=$4 h now_ids fenced
  sleep $(($(secs "$LV_T") * 3 / 2 + 1))
  for h in h1 h2 h3; do
    kill -0 "$(cat "$work/$ns-$h.pid")" 2>/dev/null || die "$what: $h's agent exited (see $work/$ns-$h.log)"
    grep -q 'stopping every VM\|"Stopped VM"' "$work/$ns-$h.log" && die "$what: $h's agent stopped a VM: $(grep -m1 'stopping every VM\|"Stopped VM"' "$work/$ns-$h.log")"
    [[ "$(kubectl get -n "$ns" vhost $h -o jsonpath='{.status.phase}')" == Live ]] || die "$what: $h is not Live"
  done
  now_ids=$(for h in h1 h2 h3; do echo "$h=$(lv_domains "$ns" $h)"; done | paste -sd' ')
  [[ "$now_ids" == "$ids" ]] || die "$what: the hosts' domains changed: before '$ids', after '$now_ids'"
  [[ "$(running_on "$ns" a) $(running_on "$ns" b) $(running_on "$ns" c)" == "Running/h1 Running/h2 Running/h3" ]] ||
    die "$what: a b c are $(running_on "$ns" a) $(running_on "$ns" b) $(running_on "$ns" c), not on h1 h2 h3"
  fenced=$(grep '"Host phase changed"' "$work/manager.log" | grep "\"namespace\":\"$ns\"" | grep -E '"to":"Fenc(ing|ed)"' || true)
  [[ -z "$fenced" ]] || die "$what: a Host left Live for Fencing: $fenced"
  n_granted=$(($(granted "$ns") - granted0))
  ((n_granted >= 3)) || die "$what: the agents did not say they rode out the outage on the statefile ($n_granted exemptions granted)"
}

# lv_cut_off_recovers NS HOST WHAT T0 GRANTED: HOST, cut off at T0,
# self-fences (every domain of its destroyed, the agent exits as
# self-fenced), is fenced, and each VM it ran boots elsewhere; no agent took
# an exemption since GRANTED (one host of three cut off is no storm).
# Timings go to $selffence, $fenced, $moved and $booted, where each VM went
# to $went.
lv_cut_off_recovers() {
  local ns=$1 h=$2 what=$3 t0=$4 granted0=$5 vms v at stop_ts start_ts
  local -A boots=()
  vms=$(kubectl get -n "$ns" vmachine -o jsonpath="{range .items[?(@.status.residentOn==\"$h\")]}{.metadata.name}{\" \"}{end}")
  [[ -n $vms ]] || die "$what: no VM runs on $h"
  for v in $vms; do boots[$v]=$(lv_boots "$ns" "$v"); done
  for _ in $(seq 1 240); do grep -q 'stopping every VM' "$work/$ns-$h.log" && break; sleep 0.25; done
  grep -q 'stopping every VM' "$work/$ns-$h.log" || die "$what: $h's agent did not self-fence (see $work/$ns-$h.log)"
  selffence=$(since "$t0")
  for _ in $(seq 1 40); do [[ -z $(lv_virsh "$ns" "$h" list --name) ]] && break; sleep 0.25; done
  [[ -z $(lv_virsh "$ns" "$h" list --name) ]] || die "$what: $h still has domains after its self-fence: $(lv_virsh "$ns" "$h" list --name)"
  lv_wait_phase "$ns" "$h" Fenced
  fenced=$(since "$t0")
  for v in $vms; do lv_running_elsewhere "$ns" "$v" "$h"; done
  moved=$(since "$t0")
  went=""
  for v in $vms; do
    at=$(kubectl get -n "$ns" vmachine "$v" -o jsonpath='{.status.residentOn}')
    went+="$v to $at, "
    # The agents' own logs (whole seconds: an earlier second is an earlier
    # instant): $h stopped the VM before its new host started it.
    stop_ts=$(log_ts "$work/$ns-$h.log" 'stopping every VM')
    start_ts=$(grep "\"Started VM\".*\"vm\":\"$v\"" "$work/$ns-$at.log" | tail -n 1 | sed -n 's/.*"ts":"\([^"]*\)".*/\1/p')
    [[ -n $start_ts ]] || die "$what: $at's agent did not log starting $v"
    (($(epoch "$stop_ts") <= $(epoch "$start_ts"))) || die "$what: $at started $v at $start_ts, before $h stopped it at $stop_ts"
  done
  for _ in $(seq 1 40); do kill -0 "$(cat "$work/$ns-$h.pid")" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$(cat "$work/$ns-$h.pid")" 2>/dev/null && die "$what: $h's agent still runs after its self-fence"
  grep -q '^poolkeeper-agent: self-fenced' "$work/$ns-$h.log" || die "$what: $h's agent did not exit as self-fenced (status 3)"
  (($(granted "$ns") == granted0)) || die "$what: an agent took an outage exemption with one host cut off"
  for v in $vms; do lv_booted "$ns" "$v" $((boots[$v] + 1)); done
  booted=$(since "$t0")
}

scenario_libvirt_outage() {
  local ns=e2e-lv-outage T2 T5 ids g0 n_granted back t0 selffence fenced moved booted went h v slotfile c1 c2 report=()
  T2=$((2 * $(secs "$LV_T"))) T5=$((5 * $(secs "$LV_T")))
  proxied "$ns" h2
  proxied "$ns" h3
  LV_HEARTBEAT_SR=shared LV_BEFORE_AGENTS=lv_outage_view lv_pool "$ns" h1 h2 h3
  lv_vm "$ns" a h1; lv_vm "$ns" b h2; lv_vm "$ns" c h3
  for v in a b c; do
    kubectl wait -n "$ns" vmachine/$v --for=jsonpath='{.status.powerState}'=Running --timeout="$WAIT" >/dev/null ||
      die "VM $v is not Running: $(running_on "$ns" $v)"
  done
  [[ "$(running_on "$ns" a) $(running_on "$ns" b) $(running_on "$ns" c)" == "Running/h1 Running/h2 Running/h3" ]] ||
    die "a b c do not run on h1 h2 h3: $(running_on "$ns" a) $(running_on "$ns" b) $(running_on "$ns" c)"
  for v in a b c; do lv_booted "$ns" $v 1; done
  kubectl wait -n "$ns" vpool/p --for=condition=HeartbeatStorage --timeout="$WAIT" >/dev/null ||
    die "the Pool's HeartbeatStorage is not True: $(kubectl get -n "$ns" vpool p -o jsonpath='{.status.conditions[?(@.type=="HeartbeatStorage")].message}')"
  # Every agent keeps its slot in the storage pool's target, h3 through its view.
  for h in h1 h2; do
    grep -q "\"Statefile on the heartbeat SR\".*\"path\":\"$(lv_statefile "$ns")\"" "$work/$ns-$h.log" ||
      die "$h's agent has no statefile in the storage pool shared: $(grep -m1 -i statefile "$work/$ns-$h.log")"
  done
  grep -q "\"Statefile on the heartbeat SR\".*\"path\":\"$lv_root/$ns-h3-view/shared/.poolkeeper-statefile/${ns}_p\"" "$work/$ns-h3.log" ||
    die "h3's agent does not keep its statefile through its view of the storage pool: $(grep -m1 -i statefile "$work/$ns-h3.log")"
  for h in h1 h2 h3; do
    [[ -s "$(lv_statefile "$ns")/$h.slot" ]] || die "no slot of $h in $(lv_statefile "$ns")"
  done
  lv_monitor_start "$ns" h1 h2 h3
  ids=$(for h in h1 h2 h3; do echo "$h=$(lv_domains "$ns" $h)"; done | paste -sd' ')

  # (1) The kube-apiserver frozen 2T.
  g0=$(granted "$ns")
  freeze kube-apiserver "$T2"
  lv_ridden_out "$ns" "after a ${T2}s API server freeze" "$ids" "$g0"
  report+=("API server frozen ${T2}s: answering again $back after the resume, $n_granted exemptions granted")
  # (2) etcd frozen 2T.
  g0=$(granted "$ns")
  freeze etcd "$T2"
  lv_ridden_out "$ns" "after a ${T2}s etcd freeze" "$ids" "$g0"
  report+=("etcd frozen ${T2}s: $n_granted exemptions granted")
  # (5) The kube-apiserver frozen 5T, past any deadline an exemption did
  # not extend: the documented outcome is the same while the statefile
  # answers and the majority stays cut off.
  g0=$(granted "$ns")
  freeze kube-apiserver "$T5"
  lv_ridden_out "$ns" "after a ${T5}s API server freeze" "$ids" "$g0"
  report+=("API server frozen ${T5}s: $n_granted exemptions granted")
  for v in a b c; do log "$(lv_one_writer "$ns" $v 1)"; done
  log "libvirt, heartbeat SR in storage pool shared (T $LV_T): $(printf '%s; ' "${report[@]}")0 domains stopped or started again (IDs and QEMU pids unchanged: $ids), 0 hosts fenced"

  # (3) h2 cut off from the API server alone, still reaching the statefile.
  g0=$(granted "$ns")
  t0=$(now)
  kill -USR1 "$(proxy_pid "$ns" h2)"
  lv_cut_off_recovers "$ns" h2 "h2 cut off from the API server" "$t0" "$g0"
  for v in a:h1 c:h3; do [[ $(running_on "$ns" ${v%%:*}) == "Running/${v#*:}" ]] || die "VM ${v%%:*} moved: $(running_on "$ns" ${v%%:*})"; done
  log "libvirt h2 cut off from the API server alone (T $LV_T): self-fenced after $selffence (its domains destroyed), Fenced after $fenced, ${went}Running after $moved, guests booted after $booted"

  # (4) h3 cut off from the API server and from the statefile: its view of
  # the storage pool gone, and its slot replaced by a frozen copy of itself
  # (its writes go on into the file it holds open, which no peer sees).
  g0=$(granted "$ns")
  slotfile="$(lv_statefile "$ns")/h3.slot"
  t0=$(now)
  kill -USR1 "$(proxy_pid "$ns" h3)"
  ln -sfn "$lv_root/$ns-h3-view/unreachable" "$lv_root/$ns-h3-view/shared"
  cp "$slotfile" "$slotfile.frozen" && mv -f "$slotfile.frozen" "$slotfile"
  c1=$(md5sum <"$slotfile")
  sleep 2
  c2=$(md5sum <"$slotfile")
  [[ "$c1" == "$c2" ]] || die "h3's slot still moves in the statefile after the cut"
  lv_cut_off_recovers "$ns" h3 "h3 cut off from the API server and the statefile" "$t0" "$g0"
  [[ $(running_on "$ns" a) == Running/h1 ]] || die "VM a moved: $(running_on "$ns" a)"
  log "libvirt h3 cut off from the API server and the statefile (T $LV_T): self-fenced after $selffence (its domains destroyed), Fenced after $fenced, ${went}Running after $moved, guests booted after $booted"
  lv_monitor_stop "$ns"
  for v in a b c; do log "$(lv_one_writer "$ns" $v 1)"; done
}

all+=(libvirt_outage)
