# shellcheck shell=bash
# Control-plane outages (DESIGN.md "Control-plane outages", invariant 9): an
# HA pool with a heartbeat SR rides out an API server outage longer than its
# heartbeat timeout with no VM stopped and no host fenced. Sourced by
# hack/e2e/run.sh.

# cp_pid NAME: the etcd or kube-apiserver of this run's control plane, from
# the pid file bin/controlplane keeps in the work directory.
cp_pid() {
  local pid
  pid=$(cat "$work/$1.pid" 2>/dev/null) || die "no $work/$1.pid"
  [[ "$(basename "$(readlink "/proc/$pid/exe")")" == "$1" ]] || die "pid $pid is not this run's $1"
  echo "$pid"
}
apiserver_pid() { cp_pid kube-apiserver; }

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

# secs DURATION: whole seconds of a duration such as 20s.
secs() { echo "${1%s}"; }

# freeze NAME SECONDS: the control plane's NAME (etcd or kube-apiserver)
# stopped (SIGSTOP) for SECONDS, then resumed; how long after the freeze
# kubectl got an answer again goes to $back.
freeze() {
  local pid
  pid=$(cp_pid "$1")
  kill -STOP "$pid"
  sleep "$2"
  kill -CONT "$pid"
  local t1; t1=$(now)
  for _ in $(seq 1 120); do kubectl get namespace default >/dev/null 2>&1 && break; sleep 0.5; done
  back=$(since "$t1")
}

# granted NS: how many "Outage exemption granted" lines the agents of NS logged.
granted() { cat "$work/$1"-h?.log | grep -c '"Outage exemption granted' || true; }

# ridden_out NS WHAT: after a freeze, a whole safe time (T + T/2)
# for the operator, which counts every host's silence afresh, to (wrongly)
# fence anyone; then outage_unharmed and the exemptions the agents granted.
ridden_out() {
  local ns=$1 what=$2
  sleep $(($(secs $T) * 3 / 2 + 1))
  outage_unharmed "$ns" "$what"
  n_granted=$(granted "$ns")
  [[ $n_granted -ge 3 ]] || die "$what: the agents did not say they rode out the outage on the statefile ($n_granted exemptions granted)"
}

# The kube-apiserver frozen (SIGSTOP) for 35s, longer than the pool's 20s
# heartbeat timeout, then resumed: no VM stops, no host is fenced.
scenario_outage_api_freeze() {
  local ns=e2e-outage-api T=20s INTERVAL=1s HEARTBEAT_SR=nfs f=35 back n_granted
  outage_pool "$ns"
  freeze kube-apiserver $f
  ridden_out "$ns" "after a ${f}s API server freeze"
  # The operator saw its own outage too, and counts every host afresh after it.
  grep -q '"The API server answers again: every host.s silence counts afresh from now"' "$work/manager.log" ||
    die "the manager did not log the end of its own outage (see $work/manager.log)"
  log "API server frozen ${f}s (timeout $T, heartbeat SR): answering again ${back} after the resume; 0 VMs stopped, 0 hosts fenced, a b c still on h1 h2 h3; $n_granted exemptions granted; Host events: $host_reasons"
}

# etcd frozen (SIGSTOP) for 20s, twice the pool's 10s heartbeat timeout and
# past its safe time (T + T/2), then resumed: the API server takes requests
# but writes nothing (every renewal times out), and the outcome is the API
# server freeze's: no VM stops, no host is fenced.
scenario_outage_etcd_freeze() {
  local ns=e2e-outage-etcd T=10s INTERVAL=1s HEARTBEAT_SR=nfs AGENT_METRICS=1 f=20 back n_granted h m exported=0
  outage_pool "$ns"
  freeze etcd $f
  ridden_out "$ns" "after a ${f}s etcd freeze"
  # The agents' own metrics (--metrics-bind-address) count the exemptions too.
  for h in h1 h2 h3; do
    m=$(agent_metrics "$ns" $h) || die "$h's agent serves no metrics"
    grep -q "^poolkeeper_agent_outage_exemptions_granted_total{host=\"$h\",namespace=\"$ns\"} [1-9]" <<<"$m" ||
      die "$h's agent exports no exemption granted: $(grep outage_exemptions <<<"$m")"
    exported=$((exported + 1))
  done
  log "etcd frozen ${f}s (timeout $T, heartbeat SR): API answering again ${back} after the resume; 0 VMs stopped, 0 hosts fenced, a b c still on h1 h2 h3; $n_granted exemptions granted, exported by $exported agents' /metrics; Host events: $host_reasons"
}

# epoch TS: the Unix time of a log line's "ts" (whole seconds).
epoch() { date -d "$1" +%s; }

# log_ts FILE PATTERN: the "ts" of the first line of FILE matching PATTERN.
log_ts() { grep -m1 -e "$2" "$1" | sed -n 's/.*"ts":"\([^"]*\)".*/\1/p'; }

# slot NS HOST: HOST's statefile slot as its peers read it: the JSON after
# the block's 16-byte header. slot_field JSON FIELD: one field of it.
slot() { tail -c +17 "$work/$1-storage/nfs/statefile/$2.slot" | tr -d '\0'; }
slot_field() { sed -n "s/.*\"$2\":\\([^,}]*\\).*/\\1/p" <<<"$1"; }

# proxied NS HOST: HOST's agent reaches the API server only through a
# hack/tcpproxy of its own (the others go straight to it): agent() picks the
# kubeconfig made here, the run's with its server set to the proxy. The
# proxy's pid is in $work/NS-HOST-proxy.pid: SIGUSR1 cuts, SIGUSR2 restores.
proxied() {
  local ns=$1 h=$2 server port cluster kc="$work/$1-$2.proxy.kubeconfig"
  [[ -x "$work/tcpproxy" ]] || "${GO:-go}" build -o "$work/tcpproxy" ./hack/tcpproxy || die "building hack/tcpproxy"
  server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  cluster=$(kubectl config view --minify -o jsonpath='{.clusters[0].name}')
  port=$(free_port)
  ("$work/tcpproxy" --listen "127.0.0.1:$port" --to "${server#https://}" >>"$work/$ns-$h-proxy.log" 2>&1 &
    echo $! >"$work/$ns-$h-proxy.pid")
  pids+=("$(cat "$work/$ns-$h-proxy.pid")")
  for _ in $(seq 1 50); do grep -q forwarding "$work/$ns-$h-proxy.log" && break; sleep 0.1; done
  cp "$KUBECONFIG" "$kc"
  kubectl --kubeconfig "$kc" config set-cluster "$cluster" --server="https://127.0.0.1:$port" >/dev/null
}
proxy_pid() { cat "$work/$1-$2-proxy.pid"; }

# history NS VM: record every powerState/residentOn of VM a watch sees to
# $work/NS-VM.history (the watch started again whenever it ends, as after
# an outage); history_of NS VM: the states recorded, one line each change.
history() {
  (while :; do
    kubectl get -n "$1" vmachine "$2" -w -o jsonpath='{.status.powerState}/{.status.residentOn}{"\n"}' 2>/dev/null
    sleep 0.5
  done >>"$work/$1-$2.history" & echo $! >"$work/$1-$2.history.pid")
  pids+=("$(cat "$work/$1-$2.history.pid")")
}
history_of() { grep -vx / "$work/$1-$2.history" | uniq | tr '\n' ' '; }

# cut_off_recovers NS WHAT T0: h2's agent, cut off at T0, self-fences (its
# VM b stopped, the agent exits as self-fenced), the operator fences h2,
# b runs on h1 or h3 and only after h2 stopped it; a and c never move and
# no agent is exempt (one host of three cut off is not a storm). Timings
# go to $selffence, $fenced and $moved, b's new host to $to, the evidence
# that b never ran twice to $once.
cut_off_recovers() {
  local ns=$1 what=$2 t0=$3 h v stop_ts start_ts
  for _ in $(seq 1 240); do grep -q 'stopping every VM' "$work/$ns-h2.log" && break; sleep 0.25; done
  grep -q 'stopping every VM' "$work/$ns-h2.log" || die "$what: h2's agent did not self-fence (see $work/$ns-h2.log)"
  selffence=$(since "$t0")
  grep 'stopping every VM' "$work/$ns-h2.log" | grep -q '"runningVMs":1' ||
    die "$what: h2's self-fence did not stop its one VM: $(grep 'stopping every VM' "$work/$ns-h2.log")"
  kubectl wait -n "$ns" vhost/h2 --for=jsonpath='{.status.phase}'=Fenced --timeout=$WAIT >/dev/null || die "$what: h2 was not fenced"
  fenced=$(since "$t0")
  for _ in $(seq 1 240); do
    case "$(running_on "$ns" b)" in Running/h1|Running/h3) break ;; esac; sleep 0.25
  done
  [[ "$(running_on "$ns" b)" =~ ^Running/h[13]$ ]] || die "$what: VM b did not run elsewhere: $(running_on "$ns" b)"
  moved=$(since "$t0")
  to=$(kubectl get -n "$ns" vmachine b -o jsonpath='{.status.residentOn}')
  for _ in $(seq 1 20); do kill -0 "$(agent_pid "$ns" h2)" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$(agent_pid "$ns" h2)" 2>/dev/null && die "$what: h2's agent still runs after its self-fence"
  grep -q '^poolkeeper-agent: self-fenced' "$work/$ns-h2.log" || die "$what: h2's agent did not exit as self-fenced (status 3)"
  # Never twice: the agents' own logs (whole seconds: an earlier second is
  # an earlier instant) show h2 stopped b before $to started it, and the
  # only agents to start b are h2's (once) and $to's (once).
  stop_ts=$(log_ts "$work/$ns-h2.log" 'stopping every VM')
  start_ts=$(log_ts "$work/$ns-$to.log" '"Started VM".*"vm":"b"')
  [[ -n "$start_ts" ]] || die "$what: $to's agent did not log starting b"
  (($(epoch "$stop_ts") < $(epoch "$start_ts"))) || die "$what: $to started b at $start_ts, not after h2 stopped it at $stop_ts"
  [[ "$(cat "$work/$ns"-h?.log | grep -c '"Started VM".*"vm":"b"')" == 2 ]] || die "$what: b was started $(cat "$work/$ns"-h?.log | grep -c '"Started VM".*"vm":"b"') times, not twice (h2, then $to)"
  once="h2 stopped b at $stop_ts, $to started it at $start_ts; b's powerState/residentOn as watched: $(history_of "$ns" b)"
  for v in a:h1 c:h3; do
    [[ "$(running_on "$ns" "${v%%:*}")" == "Running/${v#*:}" ]] || die "$what: VM ${v%%:*} is $(running_on "$ns" "${v%%:*}"), not Running/${v#*:}"
  done
  for h in h1 h3; do
    kill -0 "$(agent_pid "$ns" $h)" 2>/dev/null || die "$what: $h's agent exited (see $work/$ns-$h.log)"
    grep -q '"Stopped VM"\|stopping every VM' "$work/$ns-$h.log" && die "$what: $h's agent stopped a VM"
  done
  [[ $(granted "$ns") == 0 ]] || die "$what: an agent took an outage exemption with one host of three cut off"
  return 0
}

# One host's agent cut off from the API server alone (its proxy cut; the
# others reach the API server directly) while it still reads and writes the
# statefile: it sees itself the only host cut off, gets no exemption and
# self-fences at S + T; the operator fences h2 at its safe time and b runs
# on h1 or h3, never on two hosts at once. The proxy restored, a new boot of
# h2's agent rejoins, running nothing.
scenario_outage_host_cut_off() {
  local ns=e2e-outage-cut T=6s INTERVAL=1s HEARTBEAT_SR=nfs t0 selffence fenced moved to once s2 s1
  proxied "$ns" h2
  outage_pool "$ns"
  history "$ns" b
  t0=$(now)
  kill -USR1 "$(proxy_pid "$ns" h2)"
  # While it is cut off its slot says so, and its peers' that they reach the API server.
  sleep $(($(secs $T) * 3 / 4))
  s2=$(slot "$ns" h2) s1=$(slot "$ns" h1)
  [[ "$(slot_field "$s2" reached) $(slot_field "$s1" reached)" == "false true" ]] ||
    die "h2's statefile slot does not show it cut off and h1 not: h2 $s2, h1 $s1"
  cut_off_recovers "$ns" "h2 cut off from the API server" "$t0"
  kill -USR2 "$(proxy_pid "$ns" h2)"
  agent "$ns" h2
  kubectl wait -n "$ns" vhost/h2 --for=jsonpath='{.status.phase}'=Live --timeout=$WAIT >/dev/null || die "h2's new boot did not rejoin"
  [[ -z "$(kubectl get -n "$ns" vhost h2 -o jsonpath='{.status.runningVMs}')" ]] || die "h2's new boot runs VMs"
  log "h2 cut off from the API server alone (timeout $T; its statefile slot: reached $(slot_field "$s2" reached), $(($(slot_field "$s2" sinceOK) / 1000000))ms since its last renewal): self-fenced after $selffence, Fenced after $fenced, b running on $to after $moved; $once; the new boot rejoined Live, running nothing"
}

# The same host cut off from both the API server and the statefile. With
# the sim driver the statefile is a directory of files under
# --sim-storage-dir, so h2's agent is given a storage directory of its own,
# $work/NS-h2-storage, whose nfs is a symlink to the shared
# $work/NS-storage/nfs (the others use that directly). The cut is, besides
# h2's proxy: (1) that symlink re-pointed at a directory that does not
# exist, so every read of h2's agent fails (as on a dead mount: no
# exemption without a read); (2) h2's slot in the shared directory replaced
# by a frozen copy of itself (copied, then renamed over it), so h2's
# writes, through the file it keeps open, reach an unlinked file that no
# peer sees, and its peers see its counter stop (a stale slot reads as
# unknown), as with a host whose writes no longer reach the storage. h2
# self-fences at S + T, the operator fences it, b runs elsewhere.
scenario_outage_host_cut_off_both() {
  local ns=e2e-outage-cutboth T=6s INTERVAL=1s HEARTBEAT_SR=nfs t0 selffence fenced moved to once c1 c2 slotfile
  mkdir -p "$work/$ns-storage/nfs" "$work/$ns-h2-storage"
  ln -s "$work/$ns-storage/nfs" "$work/$ns-h2-storage/nfs"
  proxied "$ns" h2
  outage_pool "$ns"
  grep -q "\"path\":\"$work/$ns-h2-storage/nfs/statefile\"" "$work/$ns-h2.log" || die "h2's agent does not use its own view of the storage"
  history "$ns" b
  slotfile="$work/$ns-storage/nfs/statefile/h2.slot"
  t0=$(now)
  kill -USR1 "$(proxy_pid "$ns" h2)"
  ln -sfn "$work/$ns-h2-storage/unreachable" "$work/$ns-h2-storage/nfs"
  cp "$slotfile" "$slotfile.frozen" && mv -f "$slotfile.frozen" "$slotfile"
  ls "$work/$ns-h2-storage/nfs/statefile" >/dev/null 2>&1 && die "h2's view of the statefile still reads"
  c1=$(slot_field "$(slot "$ns" h2)" counter)
  sleep 2
  c2=$(slot_field "$(slot "$ns" h2)" counter)
  [[ "$c1" == "$c2" ]] || die "h2's slot still moves in the shared statefile after the cut: counter $c1 -> $c2"
  cut_off_recovers "$ns" "h2 cut off from the API server and the statefile" "$t0"
  log "h2 cut off from the API server and the statefile (timeout $T; its slot frozen at counter $c1 for its peers, its own view of the statefile gone): self-fenced after $selffence, Fenced after $fenced, b running on $to after $moved; $once"
}

# exempt_for NS HOST: how long HOST's agent was exempt, from its log's
# first "Outage exemption granted" to the "Outage exemption ended" after it.
exempt_for() {
  local f="$work/$1-$2.log" a b
  a=$(log_ts "$f" '"Outage exemption granted') b=$(log_ts "$f" '"Outage exemption ended')
  [[ -n "$a" && -n "$b" ]] && echo "$(($(epoch "$b") - $(epoch "$a")))s" || echo "?"
}

# The API server frozen for 60s: six times the pool's 10s heartbeat timeout,
# four times its safe time (T + T/2), far past an agent's self-fence
# deadline S + T (and its watchdog's, S + T + 5W/4) and past one
# exemption's bound B = T/2. The documented outcome (README "Control-plane
# outages"): while the statefile answers and the majority stays cut off,
# every read extends the exemption by B, so an outage of any length is
# ridden out: no agent self-fences or stops a VM, every slot's counter keeps
# moving while its sinceOK passes the freeze's length, nobody is fenced
# after it, and no VM is ever started a second time. A second pool, the
# same but with no heartbeat SR, frozen by the same freeze, shows the other
# documented outcome: every agent self-fences at S + T and stops its VMs.
scenario_outage_beyond_watchdog() {
  local ns=e2e-outage-long ns0=e2e-outage-nosr T=10s INTERVAL=1s HEARTBEAT_SR=nfs f=60 pid back h v n_granted c1 c2 since report=()
  outage_pool "$ns"
  for v in a b c; do history "$ns" $v; done
  HEARTBEAT_SR='' pool "$ns0" true h1 h1 h2 h3
  vm "$ns0" a h1; vm "$ns0" b h2; vm "$ns0" c h3
  for v in a b c; do
    kubectl wait -n "$ns0" vmachine/$v --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  done
  pid=$(cp_pid kube-apiserver)
  kill -STOP "$pid"
  sleep $((f - 2))
  # Still frozen: every agent of the pool with a heartbeat SR runs, exempt,
  # writing its slot; none has renewed for about the freeze's length.
  for h in h1 h2 h3; do
    kill -0 "$(agent_pid "$ns" $h)" 2>/dev/null || { kill -CONT "$pid"; die "$h's agent exited during the freeze (see $work/$ns-$h.log)"; }
    c1=$(slot_field "$(slot "$ns" $h)" counter)
    sleep 0.6
    c2=$(slot_field "$(slot "$ns" $h)" counter) since=$(($(slot_field "$(slot "$ns" $h)" sinceOK) / 1000000000))
    ((c2 > c1 && since >= f - 5)) || { kill -CONT "$pid"; die "$h's slot during the freeze: counter $c1 -> $c2, ${since}s since its last renewal"; }
    grep -q '"Outage exemption ended' "$work/$ns-$h.log" && { kill -CONT "$pid"; die "$h's exemption ended during the freeze"; }
    report+=("$h ${since}s")
  done
  kill -CONT "$pid"
  local t1; t1=$(now)
  for _ in $(seq 1 120); do kubectl get namespace default >/dev/null 2>&1 && break; sleep 0.5; done
  back=$(since "$t1")
  ridden_out "$ns" "after a ${f}s API server freeze"
  [[ "$(cat "$work/$ns"-h?.log | grep -c '"Started VM"')" == 3 ]] || die "a VM was started again: $(grep -h '"Started VM"' "$work/$ns"-h?.log)"
  for v in a b c; do
    [[ "$(grep -vx / "$work/$ns-$v.history" | sort -u | wc -l)" == 1 ]] || die "VM $v changed: $(history_of "$ns" $v)"
  done
  # Without a heartbeat SR the same outage stops every VM: every agent
  # self-fenced and exited. After it every Host is Unreachable and, all
  # three stale, the storm guard fences nobody: no VM is reset or restarted
  # elsewhere (they are still recorded Running on their hosts).
  for h in h1 h2 h3; do
    grep -q 'stopping every VM' "$work/$ns0-$h.log" || die "without a heartbeat SR, $h's agent did not self-fence during a ${f}s freeze"
    kill -0 "$(agent_pid "$ns0" $h)" 2>/dev/null && die "without a heartbeat SR, $h's agent still runs after its self-fence"
    [[ "$(kubectl get -n "$ns0" vhost $h -o jsonpath='{.status.phase}')" == Unreachable ]] ||
      die "without a heartbeat SR, $h is $(kubectl get -n "$ns0" vhost $h -o jsonpath='{.status.phase}') after the outage, not Unreachable"
  done
  [[ "$(kubectl get -n "$ns0" vpool p -o jsonpath='{.status.conditions[?(@.type=="HeartbeatStorage")].reason}')" == HeartbeatSRNotSet ]] ||
    die "the pool without a heartbeat SR does not say HeartbeatSRNotSet"
  local guard; guard=$(kubectl get -n "$ns0" vpool p -o jsonpath='{.status.conditions[?(@.type=="FencingAllowed")].status}/{.status.conditions[?(@.type=="FencingAllowed")].reason}')
  [[ $guard == False/StormGuard ]] || die "without a heartbeat SR, FencingAllowed is $guard after the outage, not False/StormGuard"
  grep '"Host phase changed"' "$work/manager.log" | grep "\"namespace\":\"$ns0\"" | grep -Eq '"to":"Fenc(ing|ed)"' &&
    die "without a heartbeat SR, a host was fenced after the outage"
  # Started again, each agent (a new boot) takes its Lease over once the
  # old holder's deadline plus T/2 has passed and starts its VM again on
  # the same host: each VM started once per boot, on its host alone.
  local t2 want
  t2=$(now)
  for h in h1 h2 h3; do agent "$ns0" $h; done
  for h in h1 h2 h3; do
    kubectl wait -n "$ns0" vhost/$h --for=jsonpath='{.status.phase}'=Live --timeout=$WAIT >/dev/null || die "without a heartbeat SR, $h's new boot did not rejoin"
  done
  for v in a:h1 b:h2 c:h3; do
    want="Started VM.*\"host\":\"${v#*:}\".*\"vm\":\"${v%%:*}\""
    for _ in $(seq 1 60); do [[ "$(grep -c "$want" "$work/$ns0-${v#*:}.log")" == 2 ]] && break; sleep 0.5; done
    [[ "$(grep -c "$want" "$work/$ns0-${v#*:}.log")" == 2 ]] || die "without a heartbeat SR, VM ${v%%:*} was not started again by ${v#*:}'s new boot"
    [[ "$(cat "$work/$ns0"-h?.log | grep -c "\"Started VM\".*\"vm\":\"${v%%:*}\"")" == 2 ]] || die "without a heartbeat SR, VM ${v%%:*} was started on another host"
  done
  local rejoined; rejoined=$(since "$t2")
  log "API server frozen ${f}s (timeout $T, heartbeat SR): answering again $back after the resume; slots $(printf '%s; ' "${report[@]}")since each agent's last renewal, counters moving; exempt for h1 $(exempt_for "$ns" h1), h2 $(exempt_for "$ns" h2), h3 $(exempt_for "$ns" h3); 0 VMs stopped, 0 hosts fenced, each VM started once; $n_granted exemptions granted"
  log "the same freeze without a heartbeat SR: all 3 agents self-fenced (every VM stopped); after it all 3 Hosts Unreachable, FencingAllowed $guard, nobody fenced, no VM restarted elsewhere; the agents started again took their Leases over and ran a b c again on h1 h2 h3 after $rejoined"
}

all+=(outage_api_freeze outage_etcd_freeze outage_host_cut_off outage_host_cut_off_both outage_beyond_watchdog)
