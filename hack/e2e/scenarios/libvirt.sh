# shellcheck shell=bash disable=SC2154 # work, WAIT and pids are run.sh's
# End-to-end scenarios with the libvirt driver: real VMs (the test guest of
# hack/guest, booted by spec.boot, writing its disk log) on simulated hosts
# (hack/libvirt-host.sh: one libvirt daemon and one emulated watchdog per
# host), a poolkeeper-agent --driver libvirt per host, HA on, disks on the
# storage pool "shared" that every simulated host has. Sourced by
# hack/e2e/run.sh, whose helpers (log, die, now, since, running_on, pids) it
# uses. Never skipped: without KVM the guests run under QEMU TCG, and a host
# whose libvirt cannot start fails the scenario saying why.
#
# Timing: T = $LV_T; with the emulated watchdog W = T/4, and the operator
# counts a silent host fenced at its safe time, T + T/2 after its last
# renewal, so a host cut off at t0 is Fenced about t0 + 3T/2 and its VMs boot
# elsewhere right after.

LV_T=${LV_T:-10s}          # heartbeat timeout of the libvirt pools
LV_INTERVAL=${LV_INTERVAL:-2s} # agents' heartbeat interval (at most T/4)
LV_WAIT=${LV_WAIT:-180}    # seconds to wait for a guest to boot (TCG on a busy machine is slow)
lv_root=""                 # POOLKEEPER_LIBVIRT_ROOT of the scenarios' hosts
declare -gA lv_uri=() lv_wd=() lv_hosts=()

# lv_setup: once per run, the test guest, the disk checker, the hosts' root
# and an exit hook that powers the hosts off.
lv_setup() {
  [[ -n "$lv_root" ]] && return
  lv_root="$work/libvirt"
  export POOLKEEPER_LIBVIRT_ROOT="$lv_root"
  mkdir -p "$lv_root"
  local out
  out=$(hack/guest/build.sh "$work/guest" 2>>"$work/guest-build.log") ||
    die "building the test guest failed: $(tail -n 5 "$work/guest-build.log")"
  lv_kernel=$(sed -n 's/^KERNEL=//p' <<<"$out")
  lv_initrd=$(sed -n 's/^INITRD=//p' <<<"$out")
  lv_cmdline=$(sed -n 's/^CMDLINE=//p' <<<"$out")
  go build -o "$work/check-disk" ./hack/guest/check-disk || die "building hack/guest/check-disk failed"
  # Chain run.sh's exit hook: hosts go down after the agents are killed.
  local prev
  eval "prev=($(trap -p EXIT))" # trap -- 'COMMAND' EXIT
  prev=${prev[2]:-:}
  # shellcheck disable=SC2064 # expanded now, on purpose
  trap "$prev; lv_down_all" EXIT
}

lv_down_all() {
  local h
  for h in "${!lv_hosts[@]}"; do hack/libvirt-host.sh down "$h" >/dev/null 2>&1 || true; done
}

# lv_up NS HOST...: simulated hosts NS-HOST, started at once; their URIs and
# watchdogs go to lv_uri and lv_wd (keyed NS/HOST).
lv_up() {
  local ns=$1 h up=() i=0; shift
  for h in "$@"; do
    hack/libvirt-host.sh up "$ns-$h" >"$work/$ns-$h.up" 2>>"$work/$ns-$h.up.log" &
    up+=($!)
  done
  for h in "$@"; do
    wait "${up[i]}" || die "hack/libvirt-host.sh up $ns-$h failed: $(tail -n 3 "$work/$ns-$h.up.log")"
    i=$((i + 1))
    lv_uri[$ns/$h]=$(sed -n 's/^LIBVIRT_URI=//p' "$work/$ns-$h.up")
    lv_wd[$ns/$h]=$(sed -n 's/^WATCHDOG=//p' "$work/$ns-$h.up")
    [[ -n "${lv_uri[$ns/$h]}" && -n "${lv_wd[$ns/$h]}" ]] || die "hack/libvirt-host.sh up $ns-$h printed no LIBVIRT_URI= or WATCHDOG= line"
    lv_hosts[$ns-$h]=1
  done
  log "libvirt hosts $* up: $(grep -h -o "KVM works\|QEMU TCG\|(TCG)" "$work/$ns-$1.up.log" | tail -n 1)"
}

# lv_down NS HOST: a power cut of the host (its agent is killed separately).
lv_down() { hack/libvirt-host.sh down "$1-$2" >>"$work/$1-$2.up.log" 2>&1; }

# lv_agent NS HOST: the host's agent with the libvirt driver and its watchdog
# (through its own TCP proxy to the API server when proxied NS HOST made one).
lv_agent() {
  local kc=$KUBECONFIG
  [[ -s "$work/$1-$2.proxy.kubeconfig" ]] && kc="$work/$1-$2.proxy.kubeconfig"
  (KUBECONFIG="$kc" bin/poolkeeper-agent --namespace "$1" --host "$2" --driver libvirt --libvirt-uri "${lv_uri[$1/$2]}" \
    --watchdog "${lv_wd[$1/$2]}" --heartbeat-interval "$LV_INTERVAL" >>"$work/$1-$2.log" 2>&1 &
    echo $! >"$work/$1-$2.pid")
  pids+=("$(cat "$work/$1-$2.pid")")
}

# lv_virsh NS HOST ARGS...: virsh on the host's daemon.
lv_virsh() { local k=$1/$2; shift 2; virsh -q -c "${lv_uri[$k]}" "$@"; }

# lv_pool NS HOST...: a pool with HA on, the shared SR "shared" (libvirt
# storage pool shared) and the hosts, each simulated with its agent; h1 is
# master. With LV_HEARTBEAT_SR=shared the SR is the pool's heartbeat SR too.
# LV_BEFORE_AGENTS, when set, is a command run with NS once the hosts are
# up and before their agents start.
lv_pool() {
  local ns=$1 h hb=""; shift
  [[ -n "${LV_HEARTBEAT_SR:-}" ]] && hb=", heartbeatStorageRepository: $LV_HEARTBEAT_SR"
  lv_setup
  kubectl create namespace "$ns" >/dev/null
  kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: Pool
metadata: {name: p}
spec: {ha: {enabled: true$hb}, heartbeatTimeout: $LV_T, master: $1, defaultStorageRepository: shared}
---
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: StorageRepository
metadata: {name: shared}
spec: {poolRef: {name: p}, type: nfs, shared: true, libvirt: {storagePool: shared}}
YAML
  for h in "$@"; do
    kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: Host
metadata: {name: $h}
spec: {poolRef: {name: p}, address: $h.example, capacity: {cpu: "8", memory: 8Gi}}
YAML
  done
  lv_up "$ns" "$@"
  [[ -n "${LV_BEFORE_AGENTS:-}" ]] && "$LV_BEFORE_AGENTS" "$ns"
  for h in "$@"; do lv_agent "$ns" "$h"; done
  for h in "$@"; do
    kubectl wait -n "$ns" vhost/"$h" --for=jsonpath='{.status.phase}'=Live --timeout="$WAIT" >/dev/null ||
      die "host $h is not Live: $(tail -n 5 "$work/$ns-$h.log")"
  done
  kubectl wait -n "$ns" vpool/p --for=jsonpath='{.status.master}'="$1" --timeout="$WAIT" >/dev/null
}

# lv_vm NS NAME HOST [SR] [NETWORK]: a Restart VM booting the test guest,
# preferring HOST, with a RW disk NS-NAME on SR (default shared) and, with
# NETWORK, an interface on it.
lv_vm() {
  local ifaces=""
  [[ -n "${5:-}" ]] && ifaces="interfaces: [{name: eth0, network: $5}]"
  kubectl apply -n "$1" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: VirtualDisk
metadata: {name: $1-$2}
spec: {poolRef: {name: p}, storageRepository: ${4:-shared}, size: 64Mi}
---
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: VirtualMachine
metadata: {name: $2}
spec:
  poolRef: {name: p}
  powerState: Running
  resources: {cpu: "1", memory: 128Mi}
  disks: [{name: log, virtualDisk: $1-$2}]
  boot: {kernel: "$lv_kernel", initrd: "$lv_initrd", cmdline: "$lv_cmdline"}
  affinity: {host: $3}
  ha: {restartPriority: Restart}
  $ifaces
YAML
}

# lv_volume NS VM: the file of the VM's disk, as its VDI's status.volume says
# (a volume recorded through a host's own view of the storage pool shared,
# NS-HOST-view/shared, as libvirt_outage gives one host, is read in the
# shared directory itself).
lv_volume() {
  kubectl get -n "$1" vdi "$1-$2" -o jsonpath='{.status.volume}' | sed "s#^$lv_root/[^/]*-view/shared/#$lv_root/shared/images/#"
}

# lv_boots NS VM: how many guest boots wrote records on the VM's disk.
lv_boots() { "$work/check-disk" "$(lv_volume "$1" "$2")" 2>/dev/null | grep -c ' records [1-9]' || true; }

# lv_booted NS VM N: wait until the VM's disk shows N boots that wrote records.
lv_booted() {
  local vol n=0
  for _ in $(seq 1 $((LV_WAIT * 5))); do
    vol=$(lv_volume "$1" "$2")
    if [[ -n "$vol" && -f "$vol" ]]; then
      n=$("$work/check-disk" "$vol" 2>/dev/null | grep -c ' records [1-9]') || true
      ((n >= $3)) && return 0
    fi
    sleep 0.2
  done
  die "VM $2: $n guest boots on its disk ${vol:-(no volume yet)} after ${LV_WAIT}s, want $3; $(running_on "$1" "$2")"
}

# lv_running_elsewhere NS VM HOST: wait until the VM runs on another host.
lv_running_elsewhere() {
  local at
  for _ in $(seq 1 $((LV_WAIT * 2))); do
    at=$(running_on "$1" "$2")
    [[ $at == Running/* && $at != "Running/$3" ]] && return 0
    sleep 0.5
  done
  die "VM $2 did not run on a host other than $3: $at"
}

# lv_one_writer NS VM N: the VM's disk shows N boots, no two at once.
lv_one_writer() {
  local vol out
  vol=$(lv_volume "$1" "$2")
  out=$("$work/check-disk" "$vol") || die "VM $2: two boots wrote its disk at once: $out"
  [[ $(grep -c ' records [1-9]' <<<"$out") -ge $3 ]] || die "VM $2: fewer than $3 boots on its disk: $out"
  tail -n 1 <<<"$out" | sed "s#^$vol#VM $2#"
}

# lv_monitor_start NS HOST...: every 100 ms, the active domains of every
# host's daemon, through one interactive virsh per host (one connection, no
# fork per listing), logged to $work/NS-domains.log on every change; a
# domain active on two hosts in one round is logged as OVERLAP.
lv_monitor_start() {
  local ns=$1; shift
  (
    set +e # a round that fails (a host down) must not end the monitor
    declare -A in=() out=() vp=()
    start() { # start HOST: a virsh for the host on fifos
      local f="$work/$ns-$1.virsh"
      rm -f "$f.in" "$f.out"; mkfifo "$f.in" "$f.out"
      stdbuf -oL -eL virsh -q -c "${lv_uri[$ns/$1]}" <"$f.in" >"$f.out" 2>&1 &
      vp[$1]=$!
      # (read-write: opening a fifo so never waits for the other side, and
      # a virsh that exited at once, its daemon down, blocks nothing)
      exec {w}<>"$f.in" {r}<>"$f.out"
      in[$1]=$w out[$1]=$r
    }
    stop() { local w=${in[$1]} r=${out[$1]}; kill "${vp[$1]}" 2>/dev/null; exec {w}>&- {r}<&-; }
    trap 'for h in "${!vp[@]}"; do stop "$h"; done; exit 0' TERM
    for h in "$@"; do start "$h"; done
    prev=""
    while :; do
      declare -A where=()
      line=""
      for h in "$@"; do
        if ! kill -0 "${vp[$h]}" 2>/dev/null; then # its daemon was down: try again
          stop "$h"; start "$h"; line+=" $h:-"; continue
        fi
        # (virsh prints no newline after echo's word and writes its prompt
        # only once it reads a line: the empty line ends the round's output)
        printf '%s\n\n' 'list --name; echo "__e""nd__"' >&"${in[$h]}"
        doms=() err=""
        while IFS= read -r -t 2 -u "${out[$h]}" l; do
          case $l in
          __end__*) break ;;
          virsh\ \#*) ;;
          error:*) err=1 ;;
          "${ns}_"*) doms+=("${l#"${ns}"_}") ;;
          esac
        done || err=1
        for d in "${doms[@]}"; do
          [[ -n "${where[$d]:-}" ]] && echo "$(date +%T.%3N) OVERLAP: VM $d active on ${where[$d]} and $h"
          where[$d]=$h
        done
        if [[ -n $err ]]; then # the daemon is down: reconnect at the next round
          stop "$h"; start "$h"; line+=" $h:-"
        else
          line+=" $h:[$(IFS=,; echo "${doms[*]}")]"
        fi
      done
      [[ $line != "$prev" ]] && echo "$(date +%T.%3N)$line"
      prev=$line
      unset where
      sleep 0.1
    done
  ) >"$work/$ns-domains.log" 2>&1 &
  lv_monitor=$!
  pids+=("$lv_monitor")
}

# lv_monitor_stop NS: stop the monitor; fail on any overlap it saw.
lv_monitor_stop() {
  kill -TERM "$lv_monitor" 2>/dev/null || true
  wait "$lv_monitor" 2>/dev/null || true
  if grep -q OVERLAP "$work/$1-domains.log"; then
    die "a VM was active on two hosts at once: $(grep -m 3 OVERLAP "$work/$1-domains.log" | paste -sd';')"
  fi
  log "domain monitor (every 100ms, every host): $(grep -c . "$work/$1-domains.log") changes, no VM active on two hosts at once (log $work/$1-domains.log)"
}

# lv_domains NS HOST: the host's active domains, each with its ID and QEMU
# pid (a domain started again, or another QEMU, shows as a change).
lv_domains() {
  local d
  for d in $(lv_virsh "$1" "$2" list --name); do
    echo "$d:$(lv_virsh "$1" "$2" domid "$d"):$(cat "$lv_root/$1-$2/run/qemu/$d.pid" 2>/dev/null)"
  done | sort | paste -sd' '
}

# lv_wait_phase NS HOST PHASE: wait for the Host's phase.
lv_wait_phase() {
  kubectl wait -n "$1" vhost/"$2" --for=jsonpath='{.status.phase}'="$3" --timeout="$WAIT" >/dev/null ||
    die "host $2 is not $3: $(kubectl get -n "$1" vhost "$2" -o jsonpath='{.status.phase}')"
}

# (1) host power loss, (4) the host back with a new boot, (5) a network no
# host offers, (6) an SR attached on one host only, (7) a VM whose kernel is
# not there.
scenario_libvirt_power_loss() {
  local ns=e2e-lv-power t0 detect fence running booted boot0 boot1 v
  lv_pool "$ns" h1 h2 h3
  # An SR whose storage pool only h1 has.
  mkdir -p "$lv_root/$ns-h1/only-h1"
  lv_virsh "$ns" h1 pool-define-as only-h1 dir --target "$lv_root/$ns-h1/only-h1" >/dev/null
  lv_virsh "$ns" h1 pool-start only-h1 >/dev/null
  kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: StorageRepository
metadata: {name: only-h1}
spec: {poolRef: {name: p}, type: ext, shared: true, libvirt: {storagePool: only-h1}}
YAML
  # (A VM placed before a host's agent has reported the SR's attachment can
  # land on that host and stay there unstarted: wait for the reports.)
  local at h
  for h in h1 h2 h3; do
    kubectl wait -n "$ns" sr/only-h1 --for=jsonpath="{.status.attachments[?(@.host==\"$h\")].host}"=$h --timeout="$WAIT" >/dev/null ||
      die "$h did not report its attachment of SR only-h1: $(kubectl get -n "$ns" sr only-h1 -o jsonpath='{.status.attachments}')"
  done
  lv_vm "$ns" a h2; lv_vm "$ns" b h2
  lv_vm "$ns" c h2 only-h1     # prefers h2, but its SR is attached on h1 only
  lv_vm "$ns" d h2 shared lab  # network lab: no host offers it
  for v in a b; do
    kubectl wait -n "$ns" vmachine/$v --for=jsonpath='{.status.powerState}'=Running --timeout="$WAIT" >/dev/null ||
      die "VM $v is not Running: $(running_on "$ns" $v)"
    [[ $(running_on "$ns" $v) == Running/h2 ]] || die "VM $v does not run on h2: $(running_on "$ns" $v)"
  done
  # Placement reads a host's attachments only when the Host's status.driver
  # says its agent reports them; while it does not, only the agent's own
  # check keeps VM c off h2: placed there, it must stay Halted, refused.
  local c_on=h1
  if [[ -z $(kubectl get -n "$ns" vhost h2 -o jsonpath='{.status.driver}') ]]; then
    c_on=h2
    log "NOTE: Host h2 reports no status.driver, so placement takes it to reach every SR; VM c may be placed on h2, where its agent must refuse it"
  fi
  if [[ $c_on == h1 ]]; then
    kubectl wait -n "$ns" vmachine/c --for=jsonpath='{.status.powerState}'=Running --timeout="$WAIT" >/dev/null ||
      die "VM c is not Running: $(running_on "$ns" c) $(kubectl get -n "$ns" vmachine c -o jsonpath='{.status.conditions}')"
    [[ $(running_on "$ns" c) == Running/h1 ]] || die "VM c (SR only-h1) does not run on h1: $(running_on "$ns" c)"
  else
    for _ in $(seq 1 120); do grep -q '"Not starting VM".*"vm":"c".*only-h1.*not plugged' "$work/$ns-h2.log" "$work/$ns-h3.log" && break; sleep 0.5; done
    grep -q '"Not starting VM".*"vm":"c".*only-h1.*not plugged' "$work/$ns-h2.log" "$work/$ns-h3.log" ||
      [[ $(running_on "$ns" c) == Running/h1 ]] || die "VM c (SR only-h1): neither running on h1 nor refused by the agent of h2 or h3: $(running_on "$ns" c)"
  fi
  for h in h2 h3; do
    at=$(kubectl get -n "$ns" sr only-h1 -o jsonpath="{.status.attachments[?(@.host==\"$h\")].attached}/{.status.attachments[?(@.host==\"$h\")].reason}")
    [[ $at == false/PlugFailed ]] || die "SR only-h1 on $h: attached/reason '$at', want false/PlugFailed"
  done
  kubectl wait -n "$ns" vmachine/d --for=jsonpath='{.status.conditions[?(@.type=="Scheduled")].reason}'=NetworkUnavailable --timeout="$WAIT" >/dev/null ||
    die "VM d: Scheduled is not NetworkUnavailable: $(kubectl get -n "$ns" vmachine d -o jsonpath='{.status.conditions}')"
  local msg
  msg=$(kubectl get -n "$ns" vmachine d -o jsonpath='{.status.conditions[?(@.type=="Scheduled")].message}')
  [[ $msg == *lab* ]] || die "VM d's Scheduled condition does not name network lab: $msg"
  t0=$(now)
  lv_booted "$ns" a 1; lv_booted "$ns" b 1
  [[ $c_on == h1 ]] && lv_booted "$ns" c 1
  log "VMs a, b on h2 booted the test guest in $(since "$t0"); c (SR only-h1; h2, h3: PlugFailed): $(running_on "$ns" c); d Halted: $msg"

  boot0=$(kubectl get -n "$ns" vhost h2 -o jsonpath='{.status.bootID}')
  lv_monitor_start "$ns" h1 h2 h3
  t0=$(now)
  lv_down "$ns" h2
  kill -9 "$(cat "$work/$ns-h2.pid")" # the power cut takes the agent too
  lv_wait_phase "$ns" h2 Unreachable; detect=$(since "$t0")
  lv_wait_phase "$ns" h2 Fenced; fence=$(since "$t0")
  for v in a b; do lv_running_elsewhere "$ns" $v h2; done
  running=$(since "$t0")
  for v in a b; do lv_booted "$ns" $v 2; done
  booted=$(since "$t0")
  [[ $c_on == h1 && $(running_on "$ns" c) != Running/h1 ]] && die "VM c left h1: $(running_on "$ns" c)"
  [[ $(running_on "$ns" c) =~ Running/h[23] ]] && die "VM c (SR only-h1) runs on $(running_on "$ns" c)"
  [[ $(kubectl get -n "$ns" vmachine d -o jsonpath='{.status.powerState}') != Running ]] || die "VM d runs"
  lv_monitor_stop "$ns"
  for v in a b; do log "$(lv_one_writer "$ns" $v 2)"; done
  log "host power loss (T $LV_T): Unreachable after $detect, Fenced after $fence, VMs Running on $(running_on "$ns" a | cut -d/ -f2) and $(running_on "$ns" b | cut -d/ -f2) after $running, guests booted there after $booted"

  # (4) The host comes back: a new boot, empty.
  t0=$(now)
  lv_up "$ns" h2
  lv_agent "$ns" h2
  lv_wait_phase "$ns" h2 Live
  boot1=$(kubectl get -n "$ns" vhost h2 -o jsonpath='{.status.bootID}')
  [[ -n $boot1 && $boot1 != "$boot0" ]] || die "h2 rejoined with boot '$boot1', not a new one (was $boot0)"
  [[ -z $(kubectl get -n "$ns" vhost h2 -o jsonpath='{.status.runningVMs}') ]] || die "h2 rejoined running VMs"
  [[ -z $(lv_virsh "$ns" h2 list --name) ]] || die "h2 has domains after its reboot: $(lv_virsh "$ns" h2 list --name)"
  for v in a b; do [[ $(running_on "$ns" $v) != */h2 ]] || die "VM $v went back to h2"; done
  log "fenced h2 back with a new boot ($boot1): Live and empty after $(since "$t0")"

  # (7) A VM whose kernel is not there: its host's libvirt refuses to start
  # it, and Ready says why (StartFailed, libvirt's error naming the file);
  # the spec mended, it runs.
  local ready
  lv_kernel=/nonexistent/vmlinuz lv_vm "$ns" g h1
  kubectl wait -n "$ns" vmachine/g --for=jsonpath='{.status.conditions[?(@.type=="Ready")].reason}'=StartFailed --timeout="$WAIT" >/dev/null ||
    die "VM g (no kernel): Ready is not StartFailed: $(kubectl get -n "$ns" vmachine g -o jsonpath='{.status.conditions}')"
  ready=$(kubectl get -n "$ns" vmachine g -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}')
  [[ $ready == "starting on "*/nonexistent/vmlinuz* ]] || die "VM g: Ready does not name the missing kernel: $ready"
  kubectl patch -n "$ns" vmachine g --type merge -p "{\"spec\":{\"boot\":{\"kernel\":\"$lv_kernel\"}}}" >/dev/null
  kubectl wait -n "$ns" vmachine/g --for=jsonpath='{.status.powerState}'=Running --timeout="$WAIT" >/dev/null ||
    die "VM g does not run once its kernel is mended: $(kubectl get -n "$ns" vmachine g -o jsonpath='{.status.conditions}')"
  log "VM g with a kernel that is not there: Ready StartFailed ($ready); mended, Running on $(running_on "$ns" g | cut -d/ -f2)"
}

# lv_unharmed NS WHAT LINES BOOT IDS: after WHAT, h2's domains are still
# IDS (IDs and QEMU pids), its agent's log past line LINES shows no VM
# stopped or started and no self-fence, h2 is Live on boot BOOT, and VMs e
# f still run on it; the domains go to $ids1.
lv_unharmed() {
  local ns=$1 what=$2 lines=$3 boot=$4 ids0=$5 v
  ids1=$(lv_domains "$ns" h2)
  [[ $ids1 == "$ids0" ]] || die "domains of h2 changed across $what: before '$ids0', after '$ids1'"
  tail -n +"$((lines + 1))" "$work/$ns-h2.log" | grep -q '"Stopped VM"\|"Started VM"\|stopping every VM' &&
    die "the agent stopped or started a VM across $what: $(tail -n +"$((lines + 1))" "$work/$ns-h2.log" | grep -m 2 'Stopped VM\|Started VM\|stopping every VM')"
  [[ $(kubectl get -n "$ns" vhost h2 -o jsonpath='{.status.phase}/{.status.bootID}') == "Live/$boot" ]] ||
    die "h2 after $what: $(kubectl get -n "$ns" vhost h2 -o jsonpath='{.status.phase}/{.status.bootID}'), want Live/$boot"
  for v in e f; do [[ $(running_on "$ns" $v) == Running/h2 ]] || die "VM $v after $what: $(running_on "$ns" $v)"; done
}

# (3) agent killed and restarted: nothing stopped, adopted; (2) agent
# SIGSTOPped past the timeout: the watchdog resets its host before the safe
# time, never two domains of one VM at once.
scenario_libvirt_agent_faults() {
  local ns=e2e-lv-agent t0 v
  lv_pool "$ns" h1 h2 h3
  lv_vm "$ns" e h2; lv_vm "$ns" f h2
  for v in e f; do
    kubectl wait -n "$ns" vmachine/$v --for=jsonpath='{.status.powerState}'=Running --timeout="$WAIT" >/dev/null
    [[ $(running_on "$ns" $v) == Running/h2 ]] || die "VM $v does not run on h2: $(running_on "$ns" $v)"
    lv_booted "$ns" $v 1
  done

  # (3) kill -9 and restart the agent.
  local boot ids0 ids1 lines
  boot=$(kubectl get -n "$ns" vhost h2 -o jsonpath='{.status.bootID}')
  ids0=$(lv_domains "$ns" h2)
  lines=$(wc -l <"$work/$ns-h2.log")
  t0=$(now)
  kill -9 "$(cat "$work/$ns-h2.pid")"
  sleep 1
  lv_agent "$ns" h2
  for _ in $(seq 1 100); do
    tail -n +"$((lines + 1))" "$work/$ns-h2.log" | grep -q 'holds the heartbeat Lease' && break
    sleep 0.2
  done
  tail -n +"$((lines + 1))" "$work/$ns-h2.log" | grep -q 'holds the heartbeat Lease' ||
    die "the restarted agent of h2 did not take its Lease: $(tail -n 5 "$work/$ns-h2.log")"
  local adopt; adopt=$(since "$t0")
  sleep 5 # two heartbeats of the new agent: its VM syncs have run
  lv_unharmed "$ns" "the agent restart" "$lines" "$boot" "$ids0"
  kubectl get -n "$ns" events --field-selector involvedObject.name=h2 -o jsonpath='{.items[*].reason}' | grep -q 'HeartbeatStale\|Fenc' &&
    die "the agent restart made h2 stale or fenced"
  log "agent of h2 killed and restarted: same boot $boot, Lease taken again after $adopt, domains adopted (IDs and QEMU pids unchanged: $ids1), no VM stopped, no fence"

  # libvirtd of h2 killed (SIGKILL): started again, as systemd does; the
  # domains run on (same IDs and QEMU pids), the agent reconnects, and h2
  # stays Live with its VMs.
  local lvpid lvnew=""
  lvpid=$(cat "$lv_root/$ns-h2/run/libvirtd.pid")
  [[ "$(basename "$(readlink "/proc/$lvpid/exe")")" == libvirtd ]] || die "pid $lvpid is not h2's libvirtd"
  lines=$(wc -l <"$work/$ns-h2.log")
  t0=$(now)
  kill -9 "$lvpid"
  for _ in $(seq 1 100); do
    lvnew=$(cat "$lv_root/$ns-h2/run/libvirtd.pid" 2>/dev/null) || true
    [[ -n $lvnew && $lvnew != "$lvpid" ]] && lv_virsh "$ns" h2 list --name >/dev/null 2>&1 && break
    sleep 0.2
  done
  [[ -n $lvnew && $lvnew != "$lvpid" ]] || die "h2's libvirtd was not started again after a kill -9"
  local lvback; lvback=$(since "$t0")
  sleep 5 # two heartbeats: the agent's VM syncs ran on the new daemon
  lv_unharmed "$ns" "the libvirtd restart" "$lines" "$boot" "$ids0"
  log "libvirtd of h2 killed: started again and answering after $lvback, domains unchanged (IDs and QEMU pids: $ids1), no VM stopped, h2 Live"

  # (2) SIGSTOP past the timeout: the emulated watchdog resets h2.
  lv_monitor_start "$ns" h1 h2 h3
  local pid resets0 reset_at safe_at first_elsewhere
  pid=$(cat "$work/$ns-h2.pid")
  resets0=$(grep -c 'resetting the host' "$lv_root/$ns-h2/watchdog.log" || true)
  t0=$(now)
  kill -STOP "$pid"
  for _ in $(seq 1 $((LV_WAIT * 5))); do
    (( $(grep -c 'resetting the host' "$lv_root/$ns-h2/watchdog.log" || true) > resets0 )) && break
    sleep 0.2
  done
  (( $(grep -c 'resetting the host' "$lv_root/$ns-h2/watchdog.log" || true) > resets0 )) ||
    die "the watchdog did not reset h2: $(tail -n 3 "$lv_root/$ns-h2/watchdog.log")"
  local reset; reset=$(since "$t0")
  lv_wait_phase "$ns" h2 Fenced
  local fence; fence=$(since "$t0")
  for v in e f; do lv_running_elsewhere "$ns" $v h2; done
  local running; running=$(since "$t0")
  for v in e f; do lv_booted "$ns" $v 2; done
  local booted; booted=$(since "$t0")
  kill -CONT "$pid"
  # The reset came before the operator's safe time.
  # (when the old boot's processes were all killed: the last line of the reset)
  reset_at=$(awk '/: reset done in / { t = $1 " " $2 } END { print t }' "$lv_root/$ns-h2/watchdog.log")
  safe_at=$(kubectl get -n "$ns" vhost h2 -o jsonpath='{.status.fencing.safeAt}')
  [[ -n $safe_at && -n $reset_at ]] || die "no safe time ('$safe_at') or no reset in the watchdog's log ('$reset_at')"
  local margin
  margin=$(( $(date -d "$safe_at" +%s%3N) - $(date -d "${reset_at//\//-}" +%s%3N) ))
  ((margin > 0)) || die "h2 was reset at $reset_at, after the safe time $safe_at"
  first_elsewhere=$(grep -m 1 -E ' h[13]:\[[^]]*\b(e|f)\b' "$work/$ns-domains.log" | cut -d' ' -f1) || true
  lv_monitor_stop "$ns"
  for v in e f; do log "$(lv_one_writer "$ns" $v 2)"; done
  # The stopped agent, resumed, finds its host reset and exits self-fenced.
  for _ in $(seq 1 50); do [[ -d /proc/$pid ]] || break; sleep 0.2; done
  [[ -d /proc/$pid ]] && die "the resumed agent of the reset h2 still runs"
  grep -q 'reset' <(tail -n 20 "$work/$ns-h2.log") || log "note: the resumed agent's last lines do not mention the reset: $(tail -n 2 "$work/$ns-h2.log")"
  log "agent of h2 SIGSTOPped (T $LV_T): watchdog reset h2 after $reset ($((margin))ms before the safe time $safe_at), Fenced after $fence, VMs Running elsewhere after $running (first domain elsewhere at $first_elsewhere), guests booted after $booted"
}

all+=(libvirt_power_loss libvirt_agent_faults)
