# shellcheck shell=bash disable=SC2154 # work, WAIT, T and pids are run.sh's
# A DR site end to end (DESIGN.md BackupLocation, Recovery, VirtualAppliance):
# two sites, each its own control plane and manager, sharing one S3 bucket
# served by versitygw (hack/versitygw.sh). The primary backs up on a schedule
# through a ReadWrite location and is lost; the DR site finds its backups
# through a ReadOnly location, tests the failover, recovers a vApp and a VM,
# and later hands them back to a rebuilt primary (failback, PreferNewer).
# Sourced by hack/e2e/run.sh; driven only with kubectl, kubectl poolkeeper
# and signals.
#
# The bucket holds one prefix per writing site: site-a (the primary's
# backups) and site-b (the DR site's, for the failback). Each site reads the
# other's prefix through a ReadOnly location.
#
# The DR site is this run's control plane (it is never lost); the primary and
# the rebuilt primary are control planes of their own, in $work/site-a and
# $work/site-a2.

DR_SYNC=2s          # syncInterval of every location of the scenario
DR_DELAY=5          # startDelay (s) of the vApp between its two groups
DR_S3_KEY=e2e-dr-access
DR_S3_SECRET=e2e-dr-secret-0123456789

kp() { bin/kubectl-poolkeeper "$@"; }

# dr_s3_up: versitygw on a free loopback port over $work/s3 with bucket
# pool-backups (with the posix backend a bucket is a directory), the
# objects' metadata in a sidecar directory (no extended attributes needed);
# the endpoint goes to $dr_s3.
dr_s3_up() {
  local gw port try
  gw=$(hack/versitygw.sh) || die "building versitygw failed"
  rm -rf "$work/s3" "$work/sidecar" && mkdir -p "$work/s3/pool-backups" "$work/sidecar"
  for try in 1 2 3 4 5; do # a free port may be taken before versitygw binds it
    port=$(free_port)
    ("$gw" --access "$DR_S3_KEY" --secret "$DR_S3_SECRET" --port "127.0.0.1:$port" \
      posix --sidecar "$work/sidecar" "$work/s3" >"$work/versitygw.log" 2>&1 & echo $! >"$work/versitygw.pid")
    dr_s3="http://127.0.0.1:$port"
    for _ in $(seq 1 60); do
      curl -s -o /dev/null --max-time 2 "$dr_s3/" && break
      kill -0 "$(cat "$work/versitygw.pid")" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$(cat "$work/versitygw.pid")" 2>/dev/null; then
      pids+=("$(cat "$work/versitygw.pid")")
      curl -s -o /dev/null --max-time 2 "$dr_s3/" || die "versitygw does not answer at $dr_s3 (see $work/versitygw.log)"
      return
    fi
    grep -q 'address already in use' "$work/versitygw.log" || break
    log "versitygw: port $port taken (try $try), another one"
  done
  die "versitygw exited: $(cat "$work/versitygw.log")"
}

# site_start NAME: a control plane of its own in $work/NAME, with its own
# manager, started in the background (site_wait waits for it).
site_start() {
  local dir="$work/$1"
  mkdir -p "$dir"
  (bin/controlplane --assets "$(hack/envtest-toolchain.sh)" --crds config/crd/bases --dir "$dir" -- \
    bin/poolkeeper --metrics-bind-address=0 --health-probe-bind-address=0 >"$work/$1.manager.log" 2>&1 &
    echo $! >"$work/$1.controlplane.pid")
  pids+=("$(cat "$work/$1.controlplane.pid")")
}

# site_wait NAME: the site's kubeconfig, once its API server answers.
site_wait() {
  local kc="$work/$1/kubeconfig"
  for _ in $(seq 1 240); do
    [[ -s "$kc" ]] && kubectl --kubeconfig "$kc" get namespace default >/dev/null 2>&1 && break; sleep 0.5
  done
  kubectl --kubeconfig "$kc" get namespace default >/dev/null 2>&1 || die "site $1 did not start (see $work/$1.manager.log)"
  echo "$kc"
}

# site_lose NAME NS HOSTS...: the site's power fails: its agents, then its
# controlplane, manager, kube-apiserver and etcd killed (SIGKILL) at once,
# each checked to be that process first (the controlplane first in line, so
# that it starts none of the others again).
site_lose() {
  local name=$1 ns=$2 h p r exe victims=(); shift 2
  for h in "$@"; do kill -9 "$(agent_pid "$ns" "$h")" 2>/dev/null || true; done
  for r in controlplane:controlplane manager:poolkeeper kube-apiserver:kube-apiserver etcd:etcd; do
    p=$(cat "$work/$name/${r%%:*}.pid" 2>/dev/null) || die "no $work/$name/${r%%:*}.pid"
    exe=$(basename "$(readlink "/proc/$p/exe" 2>/dev/null)")
    [[ $exe == "${r#*:}" ]] || die "site $name: pid $p of its ${r%%:*} is not ${r#*:} (it is '$exe')"
    victims+=("$p")
  done
  kill -9 "${victims[@]}"
}

# site_stop NAME NS HOSTS...: the site's agents and control plane stopped
# (SIGTERM), so that the scenarios after this one have the machine back.
site_stop() {
  local name=$1 ns=$2 h p; shift 2
  for h in "$@"; do kill "$(agent_pid "$ns" "$h")" 2>/dev/null || true; done
  p=$(cat "$work/$name.controlplane.pid")
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 120); do [[ -e /proc/$p ]] || return 0; sleep 0.5; done
}

# site_secrets: the S3 credentials and the backup key, the same at every site.
site_secrets() {
  kubectl create namespace "$1" >/dev/null
  kubectl create secret generic -n "$1" s3 --from-literal=accessKeyID="$DR_S3_KEY" \
    --from-literal=secretAccessKey="$DR_S3_SECRET" >/dev/null
  kubectl create secret generic -n "$1" key --from-literal=key="$dr_key" >/dev/null
}

# location NS NAME ACCESS PREFIX: a BackupLocation on the shared bucket.
location() {
  kubectl apply -n "$1" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: BackupLocation
metadata: {name: $2}
spec:
  access: $3
  syncInterval: $DR_SYNC
  s3: {endpoint: "$dr_s3", bucket: pool-backups, prefix: $4, credentialsSecretRef: {name: s3}}
YAML
}

# site_pool NS POOL MASTER HOSTS...: a pool (HA off) and its hosts, one agent
# each (KUBECONFIG is the site's), every host Live.
site_pool() {
  local ns=$1 pool=$2 master=$3 h; shift 3
  kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: Pool
metadata: {name: $pool}
spec: {heartbeatTimeout: $T, master: $master}
YAML
  for h in "$@"; do
    kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: Host
metadata: {name: $h}
spec: {poolRef: {name: $pool}, address: $h.example, capacity: {cpu: "16", memory: 64Gi}}
YAML
    agent "$ns" "$h" "$KUBECONFIG"
  done
  for h in "$@"; do kubectl wait -n "$ns" vhost/"$h" --for=jsonpath='{.status.phase}'=Live --timeout="$WAIT" >/dev/null; done
}

# appliance NS POOL: vApp shop, startDelay $DR_DELAY s.
appliance() {
  kubectl apply -n "$1" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: VirtualAppliance
metadata: {name: shop}
spec: {poolRef: {name: $2}, startDelay: ${DR_DELAY}s}
YAML
}

# dr_vm NS NAME HOST [ORDER]: a Running VM of pool p with a disk on SR nfs,
# preferring HOST; with ORDER, a member of vApp shop in start-order group ORDER.
dr_vm() {
  local app=""
  [[ -n "${4:-}" ]] && app="
  applianceRef: {name: shop}
  startOrder: $4"
  vm "$1" "$2" "$3" "$app"
}

# vm_field NS VM JSONPATH
vm_field() { kubectl get -n "$1" vmachine "$2" -o jsonpath="{$3}"; }

# wait_running NS HOSTS_RE VM...: each VM Running on a host matching HOSTS_RE.
wait_running() {
  local ns=$1 re=$2 v; shift 2
  for v in "$@"; do
    kubectl wait -n "$ns" vmachine/"$v" --for=jsonpath='{.status.powerState}'=Running --timeout="$WAIT" >/dev/null ||
      die "VM $v is not Running: $(running_on "$ns" "$v")"
    [[ "$(running_on "$ns" "$v")" =~ ^Running/($re)$ ]] || die "VM $v runs at $(running_on "$ns" "$v"), not on $re"
  done
}

# synced NS POOL LOCATION: how many Completed PoolBackups of POOL the
# namespace has through LOCATION.
synced() {
  kubectl get -n "$1" pbak -o jsonpath="{range .items[?(@.spec.storage.locationRef.name==\"$3\")]}{.spec.poolRef.name} {.status.phase}{\"\\n\"}{end}" |
    awk -v p="$2" '$1 == p && $2 == "Completed"' | wc -l
}

# stored PREFIX: how many backups the bucket holds under PREFIX.
stored() { find "$work/s3/pool-backups/$1" -name '*.pkdump' 2>/dev/null | wc -l; }

# wait_synced NS POOL LOCATION PREFIX: every backup stored under PREFIX is a
# Completed PoolBackup of POOL in NS (at least one).
wait_synced() {
  local n
  for _ in $(seq 1 180); do
    n=$(stored "$4")
    [[ $n -gt 0 && "$(synced "$1" "$2" "$3")" -ge $n ]] && return; sleep 0.5
  done
  die "$1: backuplocation/$3 has $(synced "$1" "$2" "$3") Completed PoolBackups of pool $2, the bucket $(stored "$4"): $(kubectl get -n "$1" pbloc "$3" -o jsonpath='{.status.conditions}')"
}

# recovered NS RECOVERY KIND: the objects of KIND the Recovery created.
recovered() { kubectl get -n "$1" "$3" -l "vpool.poolkeeper.io/recovery=$2" -o name; }

# started NS HOSTS...: the VMs the agents of HOSTS said they started.
started() {
  local ns=$1 h; shift
  for h in "$@"; do grep -h '"Started VM"' "$work/$ns-$h.log" 2>/dev/null || true; done
}

# micros TIME: an RFC 3339 time (to the microsecond) in seconds since the epoch.
micros() { date -d "$1" +%s.%N; }

scenario_dr_site() {
  local a=e2e-dr-a b=e2e-dr out v kc_a kc_a2 kc_b=$KUBECONFIG t0 t_backup t_sync t_test t_rec t_fb
  local db_uuid web_uuid solo_uuid last
  dr_key=$(head -c 48 /dev/urandom | base64 | head -c 48)
  dr_s3_up
  site_start site-a

  # The DR site stands by: its pool dr with hosts b1 b2 (no SR, no vApp:
  # the Recovery brings back those its VMs need) and a ReadOnly location on
  # the primary's prefix.
  site_secrets "$b"
  location "$b" site-a ReadOnly site-a
  site_pool "$b" dr b1 b1 b2

  # The primary: pool p on a1 a2, SR nfs, vApp shop (db, then web 5s
  # later) and VM solo, backed up every 10s through a ReadWrite location
  # (retain 100: the scenario prunes nothing).
  kc_a=$(site_wait site-a)
  export KUBECONFIG=$kc_a
  site_secrets "$a"
  location "$a" site-a ReadWrite site-a
  site_pool "$a" p a1 a1 a2
  kubectl apply -n "$a" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: StorageRepository
metadata: {name: nfs}
spec: {poolRef: {name: p}, type: nfs, shared: true}
YAML
  appliance "$a" p
  dr_vm "$a" db a1 0; dr_vm "$a" web a2 1; dr_vm "$a" solo a2
  wait_running "$a" 'a1|a2' db web solo
  db_uuid=$(vm_field "$a" db .status.uuid) web_uuid=$(vm_field "$a" web .status.uuid) solo_uuid=$(vm_field "$a" solo .status.uuid)
  [[ -n $db_uuid && -n $web_uuid && -n $solo_uuid ]] || die "the primary's VMs have no uuid"
  kubectl patch -n "$a" vpool p --type merge -p \
    '{"spec":{"backup":{"schedule":"@every 10s","retain":100,"storage":{"type":"Location","locationRef":{"name":"site-a"}},"encryption":{"keySecretRef":{"name":"key"}}}}}' >/dev/null
  t0=$(now)
  for _ in $(seq 1 180); do
    last=$(kubectl get -n "$a" vpool p -o jsonpath='{.status.backup.lastBackup}')
    [[ -n $last ]] && break; sleep 0.5
  done
  [[ -n $last ]] || die "the primary's schedule created no backup: $(kubectl get -n "$a" vpool p -o jsonpath='{.status.conditions[?(@.type=="BackupScheduled")]}')"
  kubectl wait -n "$a" pbak/"$last" --for=jsonpath='{.status.phase}'=Completed --timeout="$WAIT" >/dev/null ||
    die "scheduled backup $last is not Completed: $(kubectl get -n "$a" pbak "$last" -o jsonpath='{.status.conditions}')"
  t_backup=$(now)
  local backup_took; backup_took=$(since "$t0")
  # The DR site sees it through its ReadOnly location.
  export KUBECONFIG=$kc_b
  for _ in $(seq 1 180); do
    [[ "$(kubectl get -n "$b" pbak "$last" -o jsonpath='{.status.phase}' 2>/dev/null)" == Completed ]] && break; sleep 0.5
  done
  [[ "$(kubectl get -n "$b" pbak "$last" -o jsonpath='{.status.phase}' 2>/dev/null)" == Completed ]] ||
    die "the DR site did not sync backup $last: $(kubectl get -n "$b" pbloc site-a -o jsonpath='{.status.conditions}')"
  t_sync=$(since "$t_backup")

  # The primary is lost; the rebuilt one's control plane starts meanwhile.
  site_lose site-a "$a" a1 a2
  site_start site-a2
  wait_synced "$b" p site-a site-a

  # Test failover: everything recreated, nothing started, then removed.
  t0=$(now)
  out=$(kp -n "$b" dr-test dr --location site-a --source-pool p --appliance shop --vm solo --name dr-test-1 --timeout 120s 2>&1) ||
    die "kubectl poolkeeper dr-test failed: $out"
  t_test=$(since "$t0")
  grep -q "recovery/dr-test-1 DRTestReady" <<<"$out" || die "dr-test did not say DRTestReady: $out"
  for v in db web solo; do
    [[ "$(recovered "$b" dr-test-1 vmachine)" == *"/$v"* ]] || die "the test failover did not recreate VM $v: $out"
  done
  [[ "$(recovered "$b" dr-test-1 vapp)" == */shop ]] || die "the test failover did not recreate vApp shop: $out"
  [[ "$(vm_field "$b" solo .status.uuid)" == "$solo_uuid" ]] || die "test failover: solo's uuid is $(vm_field "$b" solo .status.uuid), not $solo_uuid"
  sleep 3 # a VM wrongly started would be placed and running by now
  for v in db web solo; do
    [[ "$(vm_field "$b" "$v" .spec.powerState)" == Halted ]] || die "test failover: VM $v's spec.powerState is $(vm_field "$b" "$v" .spec.powerState)"
    [[ "$(vm_field "$b" "$v" .status.powerState)" =~ ^(Halted|)$ ]] || die "test failover: VM $v is $(running_on "$b" "$v")"
  done
  [[ -z "$(started "$b" b1 b2)" ]] || die "test failover: an agent started a VM: $(started "$b" b1 b2)"
  out=$(kp -n "$b" dr-test --finish dr-test-1 --timeout 120s 2>&1) || die "dr-test --finish failed: $out"
  grep -q "DRTestCleanedUp" <<<"$out" || die "dr-test --finish did not say DRTestCleanedUp: $out"
  for v in vmachine vdi sr vapp; do
    [[ -z "$(recovered "$b" dr-test-1 $v)" ]] || die "dr-test --finish left $(recovered "$b" dr-test-1 $v)"
  done
  # Nothing else either (the DR pool had no SR nor vApp: the test made them).
  for _ in $(seq 1 20); do [[ -z "$(kubectl get -n "$b" vmachine,vdi,sr,vapp -o name)" ]] && break; sleep 0.5; done
  [[ -z "$(kubectl get -n "$b" vmachine,vdi,sr,vapp -o name)" ]] || die "dr-test --finish left $(kubectl get -n "$b" vmachine,vdi,sr,vapp -o name)"

  # The failover: the VMs run on b1 b2, with their uuids, web 5s after db.
  t0=$(now)
  out=$(kp -n "$b" recover dr --location site-a --source-pool p --appliance shop --vm solo --name failover --timeout 120s 2>&1) ||
    die "kubectl poolkeeper recover failed: $out"
  grep -q "recovery/failover Recovered" <<<"$out" || die "recover did not say Recovered: $out"
  wait_running "$b" 'b1|b2' db web solo
  t_rec=$(since "$t0")
  for v in db:$db_uuid web:$web_uuid solo:$solo_uuid; do
    [[ "$(vm_field "$b" "${v%%:*}" .status.uuid)" == "${v#*:}" ]] ||
      die "VM ${v%%:*} came back as uuid $(vm_field "$b" "${v%%:*}" .status.uuid), not ${v#*:}"
  done
  [[ "$(kubectl get -n "$b" vapp shop -o jsonpath='{.spec.poolRef.name} {.spec.startDelay}')" == "dr ${DR_DELAY}s" ]] ||
    die "the recovered vApp shop is $(kubectl get -n "$b" vapp shop -o jsonpath='{.spec}'), not of pool dr with startDelay ${DR_DELAY}s"
  local since_db since_web gap
  for _ in $(seq 1 20); do
    since_db=$(kubectl get -n "$b" vapp shop -o jsonpath='{.status.members[?(@.name=="db")].runningSince}')
    since_web=$(kubectl get -n "$b" vapp shop -o jsonpath='{.status.members[?(@.name=="web")].runningSince}')
    [[ -n $since_db && -n $since_web ]] && break; sleep 0.5
  done
  [[ -n $since_db && -n $since_web ]] || die "vApp shop does not show when db and web started: $(kubectl get -n "$b" vapp shop -o jsonpath='{.status.members}')"
  gap=$(awk -v a="$(micros "$since_db")" -v b="$(micros "$since_web")" 'BEGIN { printf "%.1f", b - a }')
  awk -v g="$gap" -v d=$DR_DELAY 'BEGIN { exit !(g >= d) }' || die "web started ${gap}s after db, before the vApp's startDelay of ${DR_DELAY}s"

  # Failback. At the DR site solo is halted, given 2Gi and backed up to
  # the DR site's prefix; the rebuilt primary recovers solo from its own
  # old backups (Halted), then from the DR site's, PreferNewer.
  kubectl patch -n "$b" vmachine solo --type merge -p '{"spec":{"powerState":"Halted"}}' >/dev/null
  kubectl wait -n "$b" vmachine/solo --for=jsonpath='{.status.powerState}'=Halted --timeout="$WAIT" >/dev/null
  kubectl patch -n "$b" vmachine solo --type merge -p '{"spec":{"resources":{"memory":"2Gi"}}}' >/dev/null
  location "$b" site-b ReadWrite site-b
  kubectl apply -n "$b" -f - >/dev/null <<YAML
apiVersion: vpool.poolkeeper.io/v1alpha1
kind: PoolBackup
metadata: {name: dr-failback}
spec: {poolRef: {name: dr}, storage: {type: Location, locationRef: {name: site-b}}, encryption: {keySecretRef: {name: key}}}
YAML
  kubectl wait -n "$b" pbak/dr-failback --for=jsonpath='{.status.phase}'=Completed --timeout="$WAIT" >/dev/null ||
    die "the DR site's backup is not Completed: $(kubectl get -n "$b" pbak dr-failback -o jsonpath='{.status.conditions}')"

  kc_a2=$(site_wait site-a2)
  export KUBECONFIG=$kc_a2
  t0=$(now)
  site_secrets "$a"
  location "$a" site-a ReadWrite site-a
  location "$a" site-b ReadOnly site-b
  site_pool "$a" p r1 r1
  wait_synced "$a" p site-a site-a
  out=$(kp -n "$a" recover p --location site-a --source-pool p --vm solo --power-on=false --name rebuild --timeout 120s 2>&1) ||
    die "recover at the rebuilt primary failed: $out"
  [[ "$(vm_field "$a" solo .status.uuid)" == "$solo_uuid" ]] || die "rebuilt primary: solo's uuid is $(vm_field "$a" solo .status.uuid)"
  [[ "$(vm_field "$a" solo .spec.resources.memory)" == 1Gi ]] || die "rebuilt primary: solo has $(vm_field "$a" solo .spec.resources.memory) before the failback"
  wait_synced "$a" dr site-b site-b
  out=$(kp -n "$a" recover p --location site-b --source-pool dr --vm solo --conflicts PreferNewer --name failback --timeout 120s 2>&1) ||
    die "the failback recovery failed: $out"
  grep -Eq '^Replace +VirtualMachine +solo ' <<<"$out" || die "the failback did not plan to replace solo: $out"
  [[ "$(vm_field "$a" solo .spec.resources.memory)" == 2Gi ]] ||
    die "failback: solo has $(vm_field "$a" solo .spec.resources.memory) at the primary, not the DR site's 2Gi: $out"
  [[ "$(vm_field "$a" solo .status.uuid)" == "$solo_uuid" ]] || die "failback: solo's uuid is $(vm_field "$a" solo .status.uuid)"
  kubectl patch -n "$a" vmachine solo --type merge -p '{"spec":{"powerState":"Running"}}' >/dev/null
  wait_running "$a" r1 solo
  t_fb=$(since "$t0")
  export KUBECONFIG=$kc_b
  site_stop site-a2 "$a" r1
  for v in b1 b2; do kill "$(agent_pid "$b" $v)" 2>/dev/null || true; done
  kill "$(cat "$work/versitygw.pid")" 2>/dev/null || true

  log "dr site: scheduled backup through the ReadWrite location in $backup_took, synced by the DR site's ReadOnly location after $t_sync"
  log "dr site: primary lost; test failover ready in $t_test (nothing started, --finish left nothing); recovery to all 3 running on b1/b2 in $t_rec, uuids kept, web ${gap}s after db (startDelay ${DR_DELAY}s)"
  log "dr site: failback to a rebuilt primary (its own backups Halted, then the DR site's PreferNewer: solo back with 2Gi, running on r1) in $t_fb"
}

all+=(dr_site)
