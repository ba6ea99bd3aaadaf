#!/usr/bin/env bash
# Builds Seaway's two container images without Docker or a registry, as OCI image archives:
#   seaway-server.oci.tar    ghcr.io/seaway-dev/seaway-server:<version>   (serving/Dockerfile:
#                            seaway-serve, and the seaway-router and seaway-train commands)
#   seaway-operator.oci.tar  ghcr.io/seaway-dev/seaway-operator:<version> (operator/Dockerfile)
# into ${XDG_CACHE_HOME:-$HOME/.cache}/seaway/node/<k8s version>/images/, with manifest.json
# listing each archive and its references. The names are the chart's and the operator's defaults,
# so once imported into the node's containerd, pods start offline with IfNotPresent.
#
# How: a Debian bookworm minbase root file system with python3 and ca-certificates (mmdebstrap;
# Debian's python3 is 3.11, like the Dockerfiles' base), made once and cached, is unpacked for
# each image and gets a virtualenv in /opt/seaway with exactly the pins of the image's
# requirements-image.txt (the file its Dockerfile installs) and the seaway wheel built from this
# tree, plus the user 10001. The wheels are downloaded on the host (pip in the chroot would not
# trust a TLS-intercepting proxy whose CA only the host has) into a cache, and installed offline
# by a pip that is copied in and never stays. The chroot steps run in a private mount namespace,
# so the /proc they mount vanishes with them. The entrypoint, user, environment and labels come
# from the Dockerfile's final stage (operator/seaway/localplane/oci.py reads it).
#
# A rebuild happens only when the source tree (pyproject.toml, README.md, operator/, serving/,
# which hold the pins files and the Dockerfiles) or this script changes, and is offline. Otherwise
# each image prints "cached". Delete ~/.cache/seaway/debian to take Debian's latest updates.
# Needs root and mmdebstrap (`make node-deps`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K8S_VERSION=${SEAWAY_K8S_VERSION:-v1.35.4}
SUITE=bookworm
MIRROR=${SEAWAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}

CACHE_HOME=${XDG_CACHE_HOME:-$HOME/.cache}/seaway
IMAGES=$CACHE_HOME/node/$K8S_VERSION/images
WORK=$CACHE_HOME/node/$K8S_VERSION/build/images
WHEELS=$CACHE_HOME/wheels
BASES=$CACHE_HOME/debian
OCI=$ROOT/operator/seaway/localplane/oci.py
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python3
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON=$ROOT/.venv/bin/python; fi
fi
START=$SECONDS
# Wheels come from the index (PyPI or PIP_INDEX_URL) into our cache, never from a host's own
# PIP_FIND_LINKS directory, so every machine builds the same image.
unset PIP_FIND_LINKS

say() { printf '[images %4ds] %s\n' "$((SECONDS - START))" "$*"; }

if [[ $EUID -ne 0 ]]; then echo "build-images.sh needs root (mmdebstrap, chroot)" >&2; exit 1; fi
if ! command -v mmdebstrap >/dev/null; then
  echo "build-images.sh needs mmdebstrap: run \`make node-deps\`" >&2; exit 1
fi

VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/operator/seaway/__init__.py")
case $(uname -m) in
  x86_64) ARCH=x86_64 GOARCH=amd64 ;;
  aarch64) ARCH=aarch64 GOARCH=arm64 ;;
  *) echo "unsupported machine $(uname -m)" >&2; exit 1 ;;
esac
# The image names are the chart's defaults (charts/seaway/values.yaml), tagged with the version.
chart_repository() {
  sed -n "s#^  repository: \(.*/$1\)\$#\1#p" "$ROOT/charts/seaway/values.yaml"
}

# The files that go into the images, and their hash (the stamp of both images).
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  mapfile -t FILES < <(cd "$ROOT" && git ls-files -co --exclude-standard -- \
    pyproject.toml README.md operator serving | sort -u)
  REVISION=$(git -C "$ROOT" rev-parse HEAD)
  if [[ -n "$(git -C "$ROOT" status --porcelain -- pyproject.toml README.md operator serving)" ]]; then
    REVISION=$REVISION-dirty
  fi
else
  mapfile -t FILES < <(cd "$ROOT" && find pyproject.toml README.md operator serving -type f \
    -not -path '*/__pycache__/*' -not -path '*.egg-info/*' | sort)
  REVISION=unknown
fi
existing=()
for f in "${FILES[@]}"; do if [[ -f "$ROOT/$f" ]]; then existing+=("$f"); fi; done
FILES=("${existing[@]}")
SOURCE_HASH=$( (cd "$ROOT" && sha256sum "${FILES[@]}" hack/build-images.sh; echo "$SUITE $ARCH") \
  | sha256sum | cut -c1-16)
STAMP="$VERSION $SOURCE_HASH"

stamp_file() { printf '%s/.%s.version' "$(dirname "$1")" "$(basename "$1")"; }
is_current() { [[ -f "$1" && -f "$(stamp_file "$1")" && "$(cat "$(stamp_file "$1")")" == "$STAMP" ]]; }

fetch_wheels() {  # every pin of both images' files, for CPython 3.11 on this machine's arch
  mkdir -p "$WHEELS"
  local args=(download --quiet --no-deps --only-binary=:all: --python-version 3.11
              --implementation cp --platform "manylinux2014_$ARCH" -d "$WHEELS"
              -r "$ROOT/serving/requirements-image.txt" -r "$ROOT/operator/requirements-image.txt")
  local glibc  # bookworm has glibc 2.36: any manylinux wheel up to that runs there
  for glibc in $(seq 17 36); do args+=(--platform "manylinux_2_${glibc}_$ARCH"); done
  if "$PYTHON" -m pip "${args[@]}" --no-index --find-links "$WHEELS" >/dev/null 2>&1; then
    say "wheels: cached in $WHEELS"; return
  fi
  local t=$SECONDS
  say "wheels: downloading the pins into $WHEELS"
  "$PYTHON" -m pip "${args[@]}"
  say "wheels: downloaded in $((SECONDS - t))s ($(du -sh "$WHEELS" | cut -f1))"
}

build_seaway_wheel() {  # from a copy of the tree, with the pinned build tools, offline
  local t=$SECONDS
  mkdir -p "$WORK/src" "$WORK/dist"
  (cd "$ROOT" && tar -cf - "${FILES[@]}") | tar -xf - -C "$WORK/src"
  "$PYTHON" -m pip wheel --quiet --no-deps --no-index --find-links "$WHEELS" -w "$WORK/dist" \
    "$WORK/src" >/dev/null
  SEAWAY_WHEEL=$(ls "$WORK"/dist/seaway-"$VERSION"-*.whl)
  say "seaway wheel: built in $((SECONDS - t))s ($(basename "$SEAWAY_WHEEL"))"
}

# What both images start from: Debian minbase with python3, without docs, man pages or locales.
BASE_PACKAGES=python3,ca-certificates
DPKG_OPTS=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
           --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
           --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*'
           --dpkgopt=force-unsafe-io)

debian_base() {  # sets BASE_TAR, the cached base (made again only when its definition changes)
  local key t=$SECONDS
  key=$(printf '%s\n' "$SUITE" "$ARCH" "$BASE_PACKAGES" "${DPKG_OPTS[@]}" | sha256sum | cut -c1-16)
  BASE_TAR=$BASES/$SUITE-$ARCH-$key.tar
  if [[ -f "$BASE_TAR" ]]; then say "debian base: cached ($(basename "$BASE_TAR"))"; return; fi
  say "debian base: $SUITE minbase + $BASE_PACKAGES from $MIRROR"
  mkdir -p "$BASES"
  mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" "${DPKG_OPTS[@]}" \
    "$SUITE" "$WORK/base.tar" "$MIRROR"
  mv "$WORK/base.tar" "$BASE_TAR"
  say "debian base: made in $((SECONDS - t))s ($(du -h "$BASE_TAR" | cut -f1))"
}

# build_image NAME PINS DOCKERFILE CHECK: the root file system, then the archive.
build_image() {
  local name=$1 pins=$2 dockerfile=$3 check=$4 out=$IMAGES/$1.oci.tar t=$SECONDS ref
  local root=$WORK/$1/root build=$WORK/$1/root/tmp/seaway-build
  ref="$(chart_repository "$name"):$VERSION"
  if [[ "$ref" != */"$name:$VERSION" ]]; then
    echo "no image repository for $name in charts/seaway/values.yaml" >&2; exit 1
  fi
  say "$name: installing /opt/seaway into the debian base"
  mkdir -p "$root"
  tar -xf "$BASE_TAR" -C "$root"
  mkdir -p "$build"
  # The image's pins without the `# build` ones (those only built the wheel), comments dropped.
  grep -v '# build' "$ROOT/$pins" | sed 's/#.*//; /^[[:space:]]*$/d' > "$build/requirements.txt"
  cp "$SEAWAY_WHEEL" "$build/"
  cp -a "$("$PYTHON" -c 'import os, pip; print(os.path.dirname(pip.__file__))')" "$build/pip"
  cp -a "$WHEELS" "$build/wheels"
  in_root() {  # a private mount namespace: the /proc mounted for the chroot goes with it
    unshare --mount --pid --fork --mount-proc="$root/proc" \
      chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
  }
  local pip=(env PYTHONPATH=/tmp/seaway-build /opt/seaway/bin/python -m pip)
  local opts=(--quiet --no-cache-dir --disable-pip-version-check)
  in_root python3 -m venv --without-pip /opt/seaway
  in_root "${pip[@]}" install "${opts[@]}" --no-index --no-deps \
    --find-links /tmp/seaway-build/wheels -r /tmp/seaway-build/requirements.txt \
    "/tmp/seaway-build/$(basename "$SEAWAY_WHEEL")"
  in_root "${pip[@]}" check "${opts[@]}" >/dev/null
  echo "seaway:x:10001:" >> "$root/etc/group"
  echo "seaway:x:10001:10001::/tmp:/usr/sbin/nologin" >> "$root/etc/passwd"
  in_root env PYTHONDONTWRITEBYTECODE=1 /opt/seaway/bin/python -c "$check"
  # Nothing of the build host: the runtime provides /dev, /etc/hosts, resolv.conf and hostname.
  rm -rf "$build" "${root:?}"/tmp/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
  : > "$root/etc/resolv.conf"
  : > "$root/etc/hostname"
  tar --numeric-owner --sort=name --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -C "$root" -cf "$WORK/$name/rootfs.tar" .
  local rootfs_bytes
  rootfs_bytes=$(stat -c %s "$WORK/$name/rootfs.tar")
  say "$name: root file system in $((SECONDS - t))s; writing the OCI archive"
  "$PYTHON" "$OCI" write --rootfs "$WORK/$name/rootfs.tar" --out "$out" --ref "$ref" \
    --dockerfile "$ROOT/$dockerfile" --architecture "$GOARCH" \
    --build-arg "SEAWAY_VERSION=$VERSION" --build-arg "SOURCE_REVISION=$REVISION" >/dev/null
  printf '%s' "$STAMP" > "$(stamp_file "$out")"
  rm -rf "${WORK:?}/$name"
  say "$name: $ref built in $((SECONDS - t))s, $((rootfs_bytes / 1000000)) MB uncompressed"
}

# What each image must import (run in the chroot); the server's scikit-learn is the pinned one,
# the version its label and the bundles' compatibility check name.
SKLEARN=$(sed -n 's/^scikit-learn==\([^ ]*\).*/\1/p' "$ROOT/serving/requirements-image.txt")
SERVER_CHECK="
import sklearn, seaway_serving.server, seaway_serving.router.main, seaway_serving.trainer.main
assert sklearn.__version__ == '$SKLEARN', sklearn.__version__"
OPERATOR_CHECK="import kopf, kubernetes, seaway.cli.main, seaway.handlers"

say "building into $IMAGES (seaway $VERSION, source $SOURCE_HASH, revision $REVISION)"
mkdir -p "$IMAGES"
todo=()
for name in seaway-server seaway-operator; do
  if is_current "$IMAGES/$name.oci.tar"; then say "$name: cached"; else todo+=("$name"); fi
done
if [[ ${#todo[@]} -gt 0 ]]; then
  rm -rf "$WORK" && mkdir -p "$WORK"
  trap 'rm -rf "$WORK"' EXIT
  fetch_wheels
  build_seaway_wheel
  debian_base
  for name in "${todo[@]}"; do
    case $name in
      seaway-server) build_image "$name" serving/requirements-image.txt serving/Dockerfile \
        "$SERVER_CHECK" ;;
      seaway-operator) build_image "$name" operator/requirements-image.txt operator/Dockerfile \
        "$OPERATOR_CHECK" ;;
    esac
  done
fi
"$PYTHON" "$OCI" catalog "$IMAGES" >/dev/null
say "all done; $(cd "$IMAGES" && du -ch ./*.oci.tar | tail -1 | cut -f1) of archives, listed in $IMAGES/manifest.json"
