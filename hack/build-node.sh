#!/usr/bin/env bash
# Builds what a real Kubernetes node beside the local plane runs (`seaway cluster up --real-node`):
# kubelet and kube-proxy, containerd with its runc shim and ctr, runc, CoreDNS, and the pause
# binary and image, all from pinned upstream sources through the Go module proxy.
#
# Output goes to a cache outside the clone, next to the control plane's:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/seaway/node/<k8s version>/bin/      the binaries
#   ${XDG_CACHE_HOME:-$HOME/.cache}/seaway/node/<k8s version>/images/   pause.oci.tar (+ the
#                                                   Seaway images of hack/build-images.sh)
# A component is skipped when its outputs exist and its stamp records the same pinned version, so
# a warm run takes a second. kubelet and kube-proxy reuse the control plane's wrapper module and Go
# build cache (run hack/build-control-plane.sh first; `make node` does). Cold, with the control
# plane built: about 6 minutes on 2 cores. runc needs gcc and libseccomp-dev, pause a static libc
# (`make node-deps` installs them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/kubernetes-module.sh
source "$ROOT/hack/lib/kubernetes-module.sh"

K8S_VERSION=${SEAWAY_K8S_VERSION:-v1.35.4}
CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.3
COREDNS_VERSION=v1.14.7
# The sandbox image name the node's containerd is configured with (the pause source of 1.35.4 is
# tagged 3.10.1 in its Makefile; the binary reports it). One name only: skopeo and podman refuse
# an OCI archive whose index lists several images unless told which one.
PAUSE_REF=localhost/pause:3.10

CACHE_HOME=${XDG_CACHE_HOME:-$HOME/.cache}/seaway
CACHE=$CACHE_HOME/node/$K8S_VERSION
BIN=$CACHE/bin
IMAGES=$CACHE/images
WORK=$CACHE/build
CONTROL_PLANE_MODULE=$CACHE_HOME/control-plane/$K8S_VERSION/build/kubernetes
PYTHON=${PYTHON:-python3}
OCI=$ROOT/operator/seaway/localplane/oci.py  # stdlib only: runs with any python3
mkdir -p "$BIN" "$IMAGES" "$WORK"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
START=$SECONDS

say() { printf '[node %4ds] %s\n' "$((SECONDS - START))" "$*"; }

is_current() {  # is_current FILE VERSION: file present and stamped with this version
  [[ -f "$1" && -f "$(dirname "$1")/.$(basename "$1").version" \
     && "$(cat "$(dirname "$1")/.$(basename "$1").version")" == "$2" ]]
}
stamp() { printf '%s' "$2" > "$(dirname "$1")/.$(basename "$1").version"; }

quietly() {  # quietly CMD...: keep go's "downloading" chatter out of the progress lines
  if ! "$@" > "$WORK/step.log" 2>&1; then cat "$WORK/step.log" >&2; return 1; fi
}

wrapper() {  # wrapper NAME MODULE@VERSION: a fresh module in $WORK/NAME requiring MODULE
  local dir=$WORK/$1
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init "local.build/$1" >/dev/null 2>&1
  quietly go get "$2"
}

build_kubernetes() {
  local all=1 b
  for b in kubelet kube-proxy; do is_current "$BIN/$b" "$K8S_VERSION" || all=0; done
  if [[ $all == 1 ]]; then say "kubelet kube-proxy $K8S_VERSION: cached"; return; fi
  local t=$SECONDS dir=$WORK/kubernetes ld
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  if [[ -f "$CONTROL_PLANE_MODULE/go.mod" && -f "$CONTROL_PLANE_MODULE/go.sum" ]]; then
    say "kubelet kube-proxy $K8S_VERSION: reusing the control plane's module"
    cp "$CONTROL_PLANE_MODULE/go.mod" "$CONTROL_PLANE_MODULE/go.sum" .
  else
    say "kubelet kube-proxy $K8S_VERSION: resolving the control plane's module (none found)"
    quietly k8s_module "$K8S_VERSION" "${K8S_CONTROL_PLANE_CMDS[@]}"
  fi
  k8s_tools_go kubelet kube-proxy > tools.go
  quietly go mod tidy
  ld=$(k8s_ldflags "$K8S_VERSION")
  for b in kubelet kube-proxy; do
    if is_current "$BIN/$b" "$K8S_VERSION"; then continue; fi
    local tb=$SECONDS
    quietly go build -trimpath -ldflags "$ld" -o "$BIN/$b" "k8s.io/kubernetes/cmd/$b"
    stamp "$BIN/$b" "$K8S_VERSION"
    say "kubernetes: $b built in $((SECONDS - tb))s"
  done
  say "kubelet kube-proxy: done in $((SECONDS - t))s ($("$BIN/kubelet" --version))"
}

build_containerd() {
  local all=1 b mod=github.com/containerd/containerd/v2
  for b in containerd containerd-shim-runc-v2 ctr; do
    is_current "$BIN/$b" "$CONTAINERD_VERSION" || all=0
  done
  if [[ $all == 1 ]]; then say "containerd $CONTAINERD_VERSION: cached"; return; fi
  say "containerd $CONTAINERD_VERSION: resolving modules"
  local t=$SECONDS
  wrapper containerd "$mod@$CONTAINERD_VERSION"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for b in containerd containerd-shim-runc-v2 ctr; do printf '\t_ "%s/cmd/%s"\n' "$mod" "$b"; done
    printf ')\n'
  } > tools.go
  quietly go mod tidy
  say "containerd: modules resolved in $((SECONDS - t))s; compiling containerd, its shim and ctr"
  for b in containerd containerd-shim-runc-v2 ctr; do
    local tb=$SECONDS
    quietly go build -trimpath -tags "no_btrfs no_devmapper no_zfs no_aufs" \
      -ldflags "-s -w -X $mod/version.Version=$CONTAINERD_VERSION -X $mod/version.Package=$mod" \
      -o "$BIN/$b" "$mod/cmd/$b"
    stamp "$BIN/$b" "$CONTAINERD_VERSION"
    say "containerd: $b built in $((SECONDS - tb))s"
  done
  say "containerd: done in $((SECONDS - t))s ($("$BIN/containerd" --version))"
}

need_c_toolchain() {  # need_c_toolchain WHAT: gcc and the static libc (and libseccomp for runc)
  local missing=()
  command -v gcc >/dev/null || missing+=(gcc)
  [[ -f /usr/lib/x86_64-linux-gnu/libc.a || -f /usr/lib/aarch64-linux-gnu/libc.a ]] \
    || missing+=(libc6-dev)
  if [[ $1 == runc ]]; then
    pkg-config --exists libseccomp 2>/dev/null || missing+=(libseccomp-dev pkg-config)
  fi
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "$1 needs ${missing[*]}: run \`make node-deps\` (apt-get install --no-install-recommends ${missing[*]})" >&2
    exit 1
  fi
}

build_runc() {
  if is_current "$BIN/runc" "$RUNC_VERSION"; then say "runc $RUNC_VERSION: cached"; return; fi
  need_c_toolchain runc
  say "runc $RUNC_VERSION: building (cgo, seccomp)"
  local t=$SECONDS
  wrapper runc "github.com/opencontainers/runc@$RUNC_VERSION"
  CGO_ENABLED=1 quietly go build -trimpath -tags "seccomp urfave_cli_no_docs" \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" -o "$BIN/runc" github.com/opencontainers/runc
  stamp "$BIN/runc" "$RUNC_VERSION"
  say "runc: built in $((SECONDS - t))s ($("$BIN/runc" --version | head -1))"
}

build_coredns() {
  if is_current "$BIN/coredns" "$COREDNS_VERSION"; then
    say "coredns $COREDNS_VERSION: cached"; return
  fi
  say "coredns $COREDNS_VERSION: building"
  local t=$SECONDS
  wrapper coredns "github.com/coredns/coredns@$COREDNS_VERSION"
  quietly go build -trimpath -o "$BIN/coredns" \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
    github.com/coredns/coredns
  stamp "$BIN/coredns" "$COREDNS_VERSION"
  say "coredns: built in $((SECONDS - t))s ($("$BIN/coredns" -version | head -1))"
}

build_pause() {
  local want  # rewritten (in a second) when this script or the OCI writer changes
  want="$K8S_VERSION $PAUSE_REF $(cat "$OCI" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
  if is_current "$BIN/pause" "$K8S_VERSION" && is_current "$IMAGES/pause.oci.tar" "$want"; then
    say "pause ($PAUSE_REF): cached"; return
  fi
  need_c_toolchain pause
  local t=$SECONDS src tag dir=$WORK/pause
  src=$(cd "$WORK" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/build/pause
  tag=$(sed -n 's/^TAG ?= *//p' "$src/Makefile")
  rm -rf "$dir" && mkdir -p "$dir/rootfs"
  gcc -Os -Wall -Werror -static "-DVERSION=v$tag-$K8S_VERSION" -o "$BIN/pause" "$src/linux/pause.c"
  strip "$BIN/pause"
  stamp "$BIN/pause" "$K8S_VERSION"
  cp "$BIN/pause" "$dir/rootfs/pause"
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$dir/rootfs" -cf "$dir/rootfs.tar" pause
  "$PYTHON" "$OCI" write --rootfs "$dir/rootfs.tar" \
    --out "$IMAGES/pause.oci.tar" --dockerfile "$src/Dockerfile" --created 2000-01-01T00:00:00Z \
    --ref "$PAUSE_REF" >/dev/null
  stamp "$IMAGES/pause.oci.tar" "$want"
  "$PYTHON" "$OCI" catalog "$IMAGES" >/dev/null
  rm -rf "$dir"
  say "pause: built in $((SECONDS - t))s ($("$BIN/pause" -v), $(stat -c %s "$BIN/pause") bytes; image $IMAGES/pause.oci.tar)"
}

components=${*:-kubernetes containerd runc coredns pause}
say "building into $CACHE: $components"
for c in $components; do
  case $c in
    kubernetes) build_kubernetes ;;
    containerd) build_containerd ;;
    runc) build_runc ;;
    coredns) build_coredns ;;
    pause) build_pause ;;
    *) echo "unknown component: $c (expected kubernetes, containerd, runc, coredns, pause)" >&2; exit 2 ;;
  esac
done
say "all done; binaries in $BIN, images in $IMAGES"
