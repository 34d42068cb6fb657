#!/usr/bin/env bash
# Builds the envtest control-plane binaries (kube-apiserver and etcd) from the Go
# module proxy and caches them outside the repository, the way setup-envtest caches
# its downloads. Prints the directory to use as KUBEBUILDER_ASSETS.
#
#   hack/envtest-toolchain.sh            # build if missing, print the directory
#   POOLKEEPER_TOOLCHAIN_DIR=/x hack/...  # cache somewhere else
#
# kube-apiserver comes from k8s.io/kubernetes through a throw-away wrapper module
# that replaces every k8s.io/<staging> module with its published v0.x release
# (k8s.io/kubernetes points them at ./staging, which a module download lacks).
# etcd comes from a five-line main around etcdmain.Main.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-3.6.6}"
GOOS="$(go env GOOS)"
GOARCH="$(go env GOARCH)"
cache_root="${POOLKEEPER_TOOLCHAIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/poolkeeper/envtest}"
dir="$cache_root/k8s/${KUBE_VERSION}-etcd${ETCD_VERSION}-${GOOS}-${GOARCH}"

log() { echo "envtest-toolchain: $*" >&2; }

if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
  echo "$dir"
  exit 0
fi

mkdir -p "$dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOWORK=off
export CGO_ENABLED=0

build_apiserver() {
  local mod="$work/kube-apiserver"
  mkdir -p "$mod"
  local staging_minor="0.${KUBE_VERSION#1.}"
  {
    echo "module poolkeeper.local/envtest/kube-apiserver"
    echo
    echo "go 1.25"
    echo
    echo "require k8s.io/kubernetes v${KUBE_VERSION}"
    echo
    echo "replace ("
    # Every staging module k8s.io/kubernetes replaces with ./staging/src/... .
    go mod download -json "k8s.io/kubernetes@v${KUBE_VERSION}" >"$work/kube.json"
    local gomod
    gomod="$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' "$work/kube.json")"
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod" |
      while read -r m; do echo "	$m => $m v${staging_minor}"; done
    echo ")"
  } >"$mod/go.mod"
  log "building kube-apiserver v${KUBE_VERSION} (first time takes several minutes)"
  local pkg="k8s.io/component-base/version"
  local ldflags="-s -w -X ${pkg}.gitVersion=v${KUBE_VERSION} -X ${pkg}.gitMajor=${KUBE_VERSION%%.*}"
  ldflags+=" -X ${pkg}.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2) -X ${pkg}.gitTreeState=clean"
  (cd "$mod" && go get "k8s.io/kubernetes/cmd/kube-apiserver@v${KUBE_VERSION}" >&2 &&
    go build -trimpath -ldflags "$ldflags" -o "$dir/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2)
  mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
}

build_etcd() {
  local mod="$work/etcd"
  mkdir -p "$mod"
  cat >"$mod/go.mod" <<MOD
module poolkeeper.local/envtest/etcd

go 1.25

require go.etcd.io/etcd/server/v3 v${ETCD_VERSION}
MOD
  cat >"$mod/main.go" <<'SRC'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
SRC
  log "building etcd v${ETCD_VERSION}"
  (cd "$mod" && go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "$dir/etcd.tmp" . >&2)
  mv "$dir/etcd.tmp" "$dir/etcd"
}

[[ -x "$dir/etcd" ]] || build_etcd
[[ -x "$dir/kube-apiserver" ]] || build_apiserver
echo "$dir"
