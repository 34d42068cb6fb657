# shellcheck shell=bash
# kubectl poolkeeper: the plugin binary against the embedded control plane,
# used as a person would (sourced by hack/e2e/run.sh).

kp() { bin/kubectl-poolkeeper "$@"; }

# flip_byte FILE OFFSET: xor one byte of FILE with 1, in place.
flip_byte() {
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  # shellcheck disable=SC2059
  printf "$(printf '\\%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" count=1 conv=notrunc status=none
}

# plugin_backup NS: backup, then backup-verify with the right key, a wrong
# key, and after a byte of the stored data was flipped.
plugin_backup() {
  local ns=$1 out key="$work/$1-key.bin" wrong="$work/$1-wrong.bin" chunk="$work/$1-chunk.bin"
  kubectl create secret generic -n "$ns" key --from-literal=key="$(head -c 48 /dev/urandom | base64 | head -c 48)" >/dev/null
  kubectl get secret -n "$ns" key -o jsonpath='{.data.key}' | base64 -d >"$key"
  head -c 48 /dev/urandom >"$wrong"
  out=$(kp -n "$ns" backup p --name b1 --key-secret key --timeout 90s) || die "kubectl poolkeeper backup failed: $out"
  grep -q "poolbackup/b1 Completed: 3 hosts, 1 SRs, 1 VDIs, 1 VMs" <<<"$out" || die "backup did not say Completed with the pool's counts: $out"
  out=$(kp -n "$ns" backup-verify b1 --key-file "$key") || die "backup-verify with the right key failed: $out"
  grep -q "poolbackup/b1 verified" <<<"$out" || die "backup-verify did not pass: $out"
  kp -n "$ns" status p | grep -q "Last verification: b1 passed" || die "status does not show the verification"
  out=$(kp -n "$ns" backup-verify b1 --key-file "$wrong" 2>&1) && die "backup-verify passed with a wrong key: $out"
  grep -q "FAIL decrypt .*wrong key" <<<"$out" ||
    die "backup-verify with a wrong key did not say so: $out"
  kubectl get secret -n "$ns" b1-chunk-000 -o jsonpath='{.data.chunk}' | base64 -d >"$chunk"
  flip_byte "$chunk" 100
  kubectl patch secret -n "$ns" b1-chunk-000 --type merge -p "{\"data\":{\"chunk\":\"$(base64 -w0 "$chunk")\"}}" >/dev/null
  out=$(kp -n "$ns" backup-verify b1 --key-file "$key" 2>&1) && die "backup-verify passed with a flipped byte: $out"
  grep -q "FAIL download .*checksum mismatch" <<<"$out" || die "backup-verify of a flipped byte did not say checksum mismatch: $out"
  plugin_report+=("backup b1 Completed and verified with its key; with a wrong key: FAIL decrypt (wrong key); after a flipped byte: FAIL download (checksum mismatch)")
}

# plugin_fence NS: a killed host seen through status: Unreachable while the
# storm guard holds (1 of 3 hosts stale, more than the 20% allowed), then,
# once the guard allows it, Fencing and Fenced.
plugin_fence() {
  local ns=$1 phase last="" row out fencing="" seen=() guard="" w
  kubectl patch -n "$ns" vpool p --type merge -p '{"spec":{"fencing":{"maxUnhealthyPercent":20}}}' >/dev/null
  kill -9 "$(agent_pid "$ns" h2)"
  for _ in $(seq 1 900); do
    out=$(kp -n "$ns" status p) || die "kubectl poolkeeper status failed: $out"
    row=$(awk '$1 == "h2" && $2 == "Member"' <<<"$out")
    phase=$(awk '{print $3}' <<<"$row")
    [[ $phase == Fencing ]] && fencing=$row
    if [[ $phase != "$last" ]]; then seen+=("$phase"); last=$phase; fi
    if [[ $phase == Unreachable && -z $guard ]] && grep -q "Storm guard: HOLDING" <<<"$out"; then
      guard=$(grep "Storm guard" <<<"$out")
      kubectl patch -n "$ns" vpool p --type merge -p '{"spec":{"fencing":{"maxUnhealthyPercent":50}}}' >/dev/null
    fi
    [[ $phase == Fenced ]] && break
    sleep 0.1
  done
  [[ -n $guard ]] || die "status did not show the storm guard holding while h2 was Unreachable: ${seen[*]}"
  [[ " ${seen[*]} " == *" Unreachable Fencing Fenced "* ]] || die "status did not show h2 Unreachable, Fencing, then Fenced: ${seen[*]}"
  grep -q "Agent, started .* ago" <<<"$fencing" || die "the Fencing row shows no progress: $fencing"
  # The pool gauges say the same, computed at scrape time from the manager's cache.
  local m scraped want=("poolkeeper_hosts{namespace=\"$ns\",phase=\"Fenced\",pool=\"p\"} 1"
    "poolkeeper_hosts{namespace=\"$ns\",phase=\"Live\",pool=\"p\"} 2"
    "poolkeeper_pool_fencing_allowed{namespace=\"$ns\",pool=\"p\",reason=\"FencingAllowed\"} 1")
  for _ in $(seq 1 20); do
    scraped=$(scrape) m=ok
    for w in "${want[@]}"; do [[ $(metric "$scraped" "${w% *}") == "${w##* }" ]] || m="${w% *} is $(metric "$scraped" "${w% *}")"; done
    [[ $m == ok ]] && break; sleep 0.5
  done
  [[ $m == ok ]] || die "pool gauges after the fence: $m"
  [[ $(metric "$scraped" "poolkeeper_pool_last_verification_timestamp_seconds{namespace=\"$ns\",pool=\"p\"}") != 0 ]] ||
    die "no poolkeeper_pool_last_verification_timestamp_seconds for pool p after backup-verify"
  plugin_report+=("status showed h2 ${seen[*]}; while Unreachable: '$guard'; while Fencing: '$(sed 's/  */ /g' <<<"$fencing")'")
}

# plugin_forget NS: host-forget of a dead host: the plan and no change
# without --yes, then forgotten with it and its VM running elsewhere.
plugin_forget() {
  local ns=$1 out t0
  pool "$ns" false h1 h1 h2
  vm "$ns" a h2
  kubectl wait -n "$ns" vmachine/a --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  kill -9 "$(agent_pid "$ns" h2)"
  kubectl wait -n "$ns" vhost/h2 --for=jsonpath='{.status.phase}'=Unreachable --timeout=$WAIT >/dev/null
  out=$(kp -n "$ns" host-forget h2 </dev/null 2>&1) && die "host-forget without --yes or an answer went on: $out"
  for want in "Plan for xe host-forget of host h2" "VM a (Running): reset to Halted (vm-reset-powerstate)" \
    "VDI RW locks released: a-root" "master:   none: the master is h1" "not confirmed: nothing changed"; do
    grep -qF "$want" <<<"$out" || die "host-forget's plan does not say '$want': $out"
  done
  [[ "$(kubectl get -n "$ns" vhost h2 -o jsonpath="{.spec.state}")" == Active ]] || die "host-forget without confirmation changed spec.state"
  [[ "$(running_on "$ns" a)" == Running/h2 ]] || die "host-forget without confirmation moved VM a: $(running_on "$ns" a)"
  t0=$(now)
  out=$(kp -n "$ns" host-forget h2 --yes --wait --timeout 90s 2>&1) || die "host-forget --yes failed: $out"
  grep -q "host/h2: forgotten" <<<"$out" || die "host-forget --yes --wait did not say forgotten: $out"
  kubectl wait -n "$ns" vmachine/a --for=jsonpath='{.status.residentOn}'=h1 --timeout=$WAIT >/dev/null
  kubectl wait -n "$ns" vmachine/a --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  plugin_report+=("host-forget h2: the plan and nothing changed without --yes; with --yes forgotten and VM a running on h1 after $(since "$t0")")
}

scenario_plugin() {
  local ns=e2e-plugin out plugin_report=()
  scraper
  pool "$ns" true h1 h1 h2 h3
  vm "$ns" a h2
  kubectl wait -n "$ns" vmachine/a --for=jsonpath='{.status.powerState}'=Running --timeout=$WAIT >/dev/null
  out=$(kp -n "$ns" status p) || die "kubectl poolkeeper status failed: $out"
  grep -q "Master h1, epoch 1; HA on" <<<"$out" || die "status does not show master h1 at epoch 1 with HA on: $out"
  grep -Eq '^h2 +Member +Live +[0-9]+s ago +- +1 +1 +True' <<<"$out" || die "status does not show h2 Live with VM a and its lock: $out"
  plugin_backup "$ns"
  plugin_fence "$ns"
  plugin_forget e2e-plugin-forget
  local r
  for r in "${plugin_report[@]}"; do log "plugin: $r"; done
}

all+=(plugin)
