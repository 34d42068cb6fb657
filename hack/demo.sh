#!/usr/bin/env bash
# make demo: applies config/samples/ (a 3-host HA pool with SRs, VDIs and VMs)
# to the control plane of `make run` (or $KUBECONFIG), starts one simulated
# agent per host in the background, backs the pool up once its VMs run
# (config/samples/backup/), then prints how to break things.
# make demo-agents (hack/demo.sh agents): (re)starts every host's agent.
# make demo-agent HOST=xen-2 (hack/demo.sh agent xen-2): (re)starts one.
# NAMESPACE (default "default") is the namespace of the demo pool.
set -euo pipefail
cd "$(dirname "$0")/.."

embedded="$PWD/bin/embedded"
kubeconfig="${KUBECONFIG:-$embedded/kubeconfig}"
# A control plane killed with SIGKILL leaves its kubeconfig behind: trust it
# only while the control plane that wrote it runs.
if [[ ! -f "$kubeconfig" ]] || { [[ "$kubeconfig" == "$embedded/kubeconfig" ]] &&
  ! kill -0 "$(cat "$embedded/controlplane.pid" 2>/dev/null || echo 0)" 2>/dev/null; }; then
  echo "demo: no control plane found: run 'make run' in another terminal first (or set KUBECONFIG)" >&2
  exit 1
fi
ns="${NAMESPACE:-default}"
k=(kubectl --kubeconfig "$kubeconfig" -n "$ns")
interval="${HEARTBEAT_INTERVAL:-5s}"
state=bin/demo
mkdir -p "$state"

# start_agent HOST (re)starts the simulated agent of one host, its pid in
# bin/demo/agent-HOST.pid and its log in bin/demo/agent-HOST.log.
start_agent() {
  local host="$1" pidfile="$state/agent-$1.pid"
  [[ -f "$pidfile" ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
  setsid bin/poolkeeper-agent --kubeconfig "$kubeconfig" --namespace "$ns" --host "$host" --driver sim \
    --heartbeat-interval "$interval" >>"$state/agent-$host.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  echo "demo: started the agent of host $host (pid $!, log $state/agent-$host.log)"
}

# start_agents (re)starts one simulated agent per Host of the namespace.
start_agents() {
  for pidfile in "$state"/agent-*.pid; do
    [[ -f "$pidfile" ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  for host in $("${k[@]}" get hosts -o jsonpath='{.items[*].metadata.name}'); do
    start_agent "$host"
  done
}
case "${1:-}" in
agents)
  start_agents
  exit 0
  ;;
agent)
  [[ -n "${2:-}" ]] || { echo "demo: usage: hack/demo.sh agent HOST (make demo-agent HOST=xen-2)" >&2; exit 2; }
  start_agent "$2"
  exit 0
  ;;
esac

# The backup (config/samples/backup/) is taken once the VMs run, so that it
# has them; config/samples/ itself holds no backup.
"${k[@]}" apply -f config/samples/
start_agents

echo "demo: waiting (up to 60s) for the hosts to be Live and the VMs to run"
running() { "${k[@]}" get vmachine -o jsonpath="{range .items[?(@.$1.powerState==\"Running\")]}{.metadata.name} {end}" | wc -w; }
for _ in $(seq 60); do
  (( $(running status) >= $(running spec) )) && break
  sleep 1
done
"${k[@]}" get vhost,vmachine
"${k[@]}" apply -f config/samples/backup/
"${k[@]}" wait pbak/demo-manual-1 --for=jsonpath='{.status.phase}'=Completed --timeout=60s || true
"${k[@]}" get pbak demo-manual-1 -o wide

[[ "$ns" == default ]] && nsenv= || nsenv=" NAMESPACE=$ns"
cat <<MSG

The pool is up. Look at it, and watch it in two more terminals:
  export KUBECONFIG=$kubeconfig
  kubectl get poolkeeper -n $ns
  kubectl get vhost -n $ns -w
  kubectl get vmachine -n $ns -w

Kill a host's agent (its VMs die with it, as with a power loss) and watch the
host go Unreachable, Fencing, Fenced, and its VMs restart elsewhere:
  kill \$(cat $state/agent-xen-2.pid)
  kubectl events -n $ns --for vhost/xen-2 -w    # what the operator did, in order; all of it: kubectl events -n $ns

Bring it back (a new boot, so it rejoins as a member; log and pid file in $state/):
  make demo-agent HOST=xen-2$nsenv

Forget a dead host (xe host-forget):    kubectl -n $ns patch vhost xen-2 --type merge -p '{"spec":{"state":"Forgotten"}}'
Move the master (planned hand-over):    kubectl -n $ns patch vpool demo --type merge -p '{"spec":{"master":"xen-3"}}'
See the backup taken:                   kubectl -n $ns get pbak demo-manual-1 -o wide
Stop the agents:                        kill \$(cat $state/agent-*.pid)

Lose the whole pool and restore it from the backup (pool-restore-database).
Deleting a Host forgets it once it is down: with HA on and the 30s timeout,
up to about 45s after its agent died. The Pool goes last, once it has no hosts:
  kill \$(cat $state/agent-*.pid)
  kubectl -n $ns delete vmachine,vdi,sr --all
  kubectl -n $ns delete vhost --all
  kubectl -n $ns delete vpool demo
  kubectl -n $ns apply -f - <<<'{"apiVersion":"vpool.poolkeeper.io/v1alpha1","kind":"Pool","metadata":{"name":"demo-restored"},"spec":{"ha":{"enabled":true},"restoreFrom":{"backupName":"demo-manual-1"}}}'
  kubectl -n $ns wait vpool/demo-restored --for=condition=Restored
  make demo-agents$nsenv    # the hosts' agents again: the hosts rejoin, the VMs start
MSG
