#!/usr/bin/env bash
# Builds versitygw, an S3 server over a plain directory (its posix backend),
# from the Go module proxy and caches it outside the repository, next to the
# envtest binaries of hack/envtest-toolchain.sh. Prints the binary's path.
# The e2e scenario dr_site runs it as the bucket both sites share.
#
#   hack/versitygw.sh                     # build if missing, print the path
#   POOLKEEPER_TOOLCHAIN_DIR=/x hack/...  # cache somewhere else
#
# Then: versitygw --access K --secret S --port 127.0.0.1:P posix --sidecar META DIR
# serves every directory of DIR as a bucket (mkdir DIR/NAME makes one), the
# objects' metadata kept in files under META (without --sidecar, in
# extended attributes, which not every filesystem has).
set -euo pipefail

VERSITYGW_VERSION="${VERSITYGW_VERSION:-1.8.0}"
GOOS="$(go env GOOS)"
GOARCH="$(go env GOARCH)"
cache_root="${POOLKEEPER_TOOLCHAIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/poolkeeper/envtest}"
dir="$cache_root/versitygw/${VERSITYGW_VERSION}-${GOOS}-${GOARCH}"
bin="$dir/versitygw"

if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$dir"
tmp="$(mktemp -d "$dir/build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "versitygw: building github.com/versity/versitygw v${VERSITYGW_VERSION} (once: one to a few minutes)" >&2
# go install of a module@version ignores the repository's go.mod and go.work.
GOWORK=off CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -trimpath" \
  go install -ldflags "-s -w" "github.com/versity/versitygw/cmd/versitygw@v${VERSITYGW_VERSION}" >&2
mv "$tmp/versitygw" "$bin"
echo "$bin"
