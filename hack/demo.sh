#!/usr/bin/env bash
# make demo: applies config/samples/ (a 3-host HA pool with SRs, VDIs and VMs)
# to the control plane of `make run` (or $KUBECONFIG) and starts one simulated
# agent per host in the background, then prints how to break things.
# make demo-agents (hack/demo.sh agents): (re)starts the agents only.
set -euo pipefail
cd "$(dirname "$0")/.."

kubeconfig="${KUBECONFIG:-$PWD/bin/embedded/kubeconfig}"
if [[ ! -f "$kubeconfig" ]]; then
  echo "demo: no control plane found: run 'make run' in another terminal first (or set KUBECONFIG)" >&2
  exit 1
fi
ns="${NAMESPACE:-default}"
k=(kubectl --kubeconfig "$kubeconfig" -n "$ns")
interval="${HEARTBEAT_INTERVAL:-5s}"
state=bin/demo
mkdir -p "$state"

# start_agents (re)starts one simulated agent per Host of the namespace.
start_agents() {
  for pidfile in "$state"/agent-*.pid; do
    [[ -f "$pidfile" ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  for host in $("${k[@]}" get hosts -o jsonpath='{.items[*].metadata.name}'); do
    setsid bin/poolkeeper-agent --kubeconfig "$kubeconfig" --namespace "$ns" --host "$host" --driver sim \
      --heartbeat-interval "$interval" >"$state/agent-$host.log" 2>&1 < /dev/null &
    echo $! >"$state/agent-$host.pid"
    echo "demo: started the agent of host $host (pid $!, log $state/agent-$host.log)"
  done
}
if [[ "${1:-}" == agents ]]; then
  start_agents
  exit 0
fi

# The backup sample is applied once the VMs run, so that it has them.
backup=config/samples/vpool_v1alpha1_poolbackup.yaml
for f in config/samples/*.yaml; do
  [[ "$f" == "$backup" ]] || "${k[@]}" apply -f "$f"
done
start_agents

echo "demo: waiting (up to 60s) for the hosts to be Live and the VMs to run"
running() { "${k[@]}" get vmachine -o jsonpath="{range .items[?(@.$1.powerState==\"Running\")]}{.metadata.name} {end}" | wc -w; }
for _ in $(seq 60); do
  (( $(running status) >= $(running spec) )) && break
  sleep 1
done
"${k[@]}" get vhost,vmachine
"${k[@]}" apply -f "$backup"

cat <<MSG

The pool is coming up. Watch it:
  export KUBECONFIG=$kubeconfig
  kubectl get poolkeeper -n $ns -w

Kill a host's agent (its VMs die with it, as with a power loss) and watch the
host go Unreachable, Fencing, Fenced, and its VMs restart elsewhere:
  kill \$(cat $state/agent-xen-2.pid)
  kubectl get vhost,vmachine -n $ns -w

Bring it back (a new boot, so it rejoins as a member):
  setsid bin/poolkeeper-agent --kubeconfig $kubeconfig --namespace $ns --host xen-2 --driver sim --heartbeat-interval $interval &

Forget a dead host (xe host-forget):    kubectl -n $ns patch vhost xen-2 --type merge -p '{"spec":{"state":"Forgotten"}}'
Move the master (planned hand-over):    kubectl -n $ns patch vpool demo --type merge -p '{"spec":{"master":"xen-3"}}'
See the backup taken:                   kubectl -n $ns get pbak demo-manual-1 -o wide
Stop the agents:                        kill \$(cat $state/agent-*.pid)

Lose the whole pool and restore it from the backup (pool-restore-database):
  kill \$(cat $state/agent-*.pid)
  kubectl -n $ns delete vpool,vmachine,vdi,sr --all && kubectl -n $ns delete vhost --all
  kubectl -n $ns apply -f - <<<'{"apiVersion":"vpool.poolkeeper.io/v1alpha1","kind":"Pool","metadata":{"name":"demo-restored"},"spec":{"ha":{"enabled":true},"restoreFrom":{"backupName":"demo-manual-1"}}}'
  kubectl -n $ns wait vpool/demo-restored --for=condition=Restored
  make demo-agents    # the hosts' agents again: the hosts rejoin, the VMs start
MSG
