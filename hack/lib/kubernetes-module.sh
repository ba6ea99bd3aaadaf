# shellcheck shell=bash
# Sourced by hack/build-control-plane.sh and hack/build-node.sh: the wrapper Go module both build
# Kubernetes commands from, and the version ldflags they stamp into them. One place, so the
# control plane and the node are built from the same module set and share the Go build cache
# (kubelet: 17 s after the control plane; 7-10 minutes with an empty Go build cache, which is
# what an XDG_CACHE_HOME override without GOCACHE gives, as go keeps its cache there).

# The control plane's commands. The module is resolved for these; the node's commands (kubelet,
# kube-proxy) are then built from a copy of it with its own tools.go, so both builds use the same
# module versions and the compiled packages in the Go build cache serve both.
# shellcheck disable=SC2034  # used by the scripts that source this file
K8S_CONTROL_PLANE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

# k8s_tools_go CMD...: a tools.go importing k8s.io/kubernetes/cmd/<CMD> for each CMD.
k8s_tools_go() {
  printf '//go:build tools\n\npackage tools\n\nimport (\n'
  local c
  for c in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
  printf ')\n'
}

# k8s_module VERSION CMD...: turn the (empty) current directory into a module that builds the
# commands. k8s.io/kubernetes replaces its staging modules by ./staging paths, which a dependent
# module cannot follow; pin each one to its published version instead, listed from the real go.mod.
k8s_module() {
  local version=$1 staging gomod mods m gd
  shift
  staging=v0.${version#v1.}
  go mod init local.build/kubernetes >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@$version" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  mods=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod")
  for m in $mods; do go mod edit "-replace=$m=$m@$staging"; done
  gd=$(awk '/^godebug /{print $2}' "$gomod")
  if [[ -n "$gd" ]]; then go mod edit "-godebug=$gd"; fi
  k8s_tools_go "$@" > tools.go
  go get "k8s.io/kubernetes@$version" >/dev/null
  go mod tidy >/dev/null
}

# k8s_ldflags VERSION: what `kubectl version` and the components report.
k8s_ldflags() {
  local version=$1 minor ld kv
  minor=$(echo "$version" | cut -d. -f2)
  ld="-s -w"
  for kv in "gitVersion=$version" gitMajor=1 "gitMinor=$minor" gitTreeState=clean \
            "buildDate=2000-01-01T00:00:00Z"; do
    ld="$ld -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
  done
  printf '%s' "$ld"
}
