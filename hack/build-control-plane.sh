#!/usr/bin/env bash
# Builds the local Kubernetes control plane Seaway tests and `seaway cluster up` run on:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm, all from
# pinned upstream Go modules through the Go module proxy, plus the Gateway API CRDs.
#
# Output goes to a cache outside the clone (binaries are never committed):
#   ${XDG_CACHE_HOME:-$HOME/.cache}/seaway/control-plane/<k8s version>/bin/
# A component is skipped when its binary exists and its stamp records the same pinned version, so a
# warm run takes a second. The first build takes many minutes; each step prints its elapsed time.
set -euo pipefail

# shellcheck source=hack/lib/kubernetes-module.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/kubernetes-module.sh"

K8S_VERSION=${SEAWAY_K8S_VERSION:-v1.35.4}
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
GATEWAY_API_VERSION=v1.4.1

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/seaway/control-plane/$K8S_VERSION
BIN=$CACHE/bin
WORK=$CACHE/build
mkdir -p "$BIN" "$WORK" "$CACHE/gateway-api"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
START=$SECONDS

say() { printf '[control-plane %4ds] %s\n' "$((SECONDS - START))" "$*"; }

is_current() {  # is_current NAME VERSION: binary present and stamped with this version
  [[ -x "$BIN/$1" && -f "$BIN/.$1.version" && "$(cat "$BIN/.$1.version")" == "$2" ]]
}
stamp() { printf '%s' "$2" > "$BIN/.$1.version"; }

build_etcd() {
  if is_current etcd "$ETCD_VERSION"; then say "etcd $ETCD_VERSION: cached"; return; fi
  say "etcd $ETCD_VERSION: building"
  local t=$SECONDS dir=$WORK/etcd
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init local.build/etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  stamp etcd "$ETCD_VERSION"
  say "etcd: built in $((SECONDS - t))s ($("$BIN/etcd" --version | head -1))"
}

build_kwok() {
  if is_current kwok "$KWOK_VERSION"; then say "kwok $KWOK_VERSION: cached"; return; fi
  say "kwok $KWOK_VERSION: building"
  local t=$SECONDS dir=$WORK/kwok
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init local.build/kwok >/dev/null 2>&1
  go get "sigs.k8s.io/kwok@$KWOK_VERSION" >/dev/null
  go build -trimpath -o "$BIN/kwok" \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
  stamp kwok "$KWOK_VERSION"
  say "kwok: built in $((SECONDS - t))s"
}

build_kubernetes() {
  local all=1 b
  for b in "${K8S_CONTROL_PLANE_CMDS[@]}"; do
    is_current "$b" "$K8S_VERSION" || all=0
  done
  if [[ $all == 1 ]]; then say "kubernetes $K8S_VERSION: cached"; return; fi
  say "kubernetes $K8S_VERSION: resolving modules"
  local t=$SECONDS dir=$WORK/kubernetes ld
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  k8s_module "$K8S_VERSION" "${K8S_CONTROL_PLANE_CMDS[@]}"
  say "kubernetes: modules resolved in $((SECONDS - t))s; compiling 4 binaries (the long step)"
  ld=$(k8s_ldflags "$K8S_VERSION")
  for b in "${K8S_CONTROL_PLANE_CMDS[@]}"; do
    if is_current "$b" "$K8S_VERSION"; then continue; fi
    local tb=$SECONDS
    go build -trimpath -ldflags "$ld" -o "$BIN/$b" "k8s.io/kubernetes/cmd/$b"
    stamp "$b" "$K8S_VERSION"
    say "kubernetes: $b built in $((SECONDS - tb))s"
  done
  say "kubernetes: done in $((SECONDS - t))s ($("$BIN/kube-apiserver" --version))"
}

build_helm() {
  if is_current helm "$HELM_VERSION"; then say "helm $HELM_VERSION: cached"; return; fi
  say "helm $HELM_VERSION: building"
  local t=$SECONDS dir=$WORK/helm
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init local.build/helm >/dev/null 2>&1
  go get "helm.sh/helm/v3@$HELM_VERSION" >/dev/null
  go build -trimpath -o "$BIN/helm" \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm.sh/helm/v3/cmd/helm
  stamp helm "$HELM_VERSION"
  say "helm: built in $((SECONDS - t))s"
}

fetch_gateway_api() {
  local out=$CACHE/gateway-api
  if [[ -f "$out/.version" && "$(cat "$out/.version")" == "$GATEWAY_API_VERSION" ]]; then
    say "gateway-api $GATEWAY_API_VERSION CRDs: cached"; return
  fi
  local dir
  dir=$(cd "$WORK" && go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -f "$out"/*.yaml
  cp "$dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml "$out/"
  chmod u+w "$out"/*.yaml
  printf '%s' "$GATEWAY_API_VERSION" > "$out/.version"
  say "gateway-api $GATEWAY_API_VERSION: $(ls "$out"/*.yaml | wc -l) standard CRDs in $out"
}

components=${*:-etcd kwok kubernetes helm gateway-api}
say "building into $BIN: $components"
for c in $components; do
  case $c in
    etcd) build_etcd ;;
    kwok) build_kwok ;;
    kubernetes) build_kubernetes ;;
    helm) build_helm ;;
    gateway-api) fetch_gateway_api ;;
    *) echo "unknown component: $c (expected etcd, kwok, kubernetes, helm, gateway-api)" >&2; exit 2 ;;
  esac
done
say "all done; binaries in $BIN"
