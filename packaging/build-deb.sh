#!/usr/bin/env bash
# Build zoomd's .deb with Debian's Python tooling (dh + pybuild) in a scratch
# directory, then check that it installs into a scratch root and runs from there.
#
#   packaging/build-deb.sh [OUTDIR]      the .deb is copied to OUTDIR (default: ./dist)
#
# The scratch root is a throw-away overlay of this host's root filesystem in a
# private mount namespace: `dpkg -i` runs chrooted in it (maintainer scripts and
# all), then `zoomd --version` and `zoomd check` run from the installed package;
# the host's own dpkg database and files are never touched.
#
# Needs root (apt-get for the build dependencies, mount for the scratch root).
# pydantic 2: where the distribution's python3-pydantic is older than 2.5 (Debian
# 12), the build uses the pkg.zoomd.vendor profile and bundles pydantic 2 wheels
# fetched with pip (ZOOMD_DEB_VENDOR=yes|no|auto overrides; default auto).
# Exit status: 0 built and checked, 1 failed, 77 cannot be checked here (the
# reason is printed).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
outdir="$(mkdir -p "${1:-$repo/dist}" && cd "${1:-$repo/dist}" && pwd)"
vendor="${ZOOMD_DEB_VENDOR:-auto}"
# pip (for the vendored wheels) is the caller's Python; the build itself uses the
# distribution's python3 only, whatever venv or pyenv the caller has on PATH.
pip_python="${PIP_PYTHON:-$(command -v python3 || true)}"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH VIRTUAL_ENV PYTHONHOME
export LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive

say() { printf 'build-deb: %s\n' "$*" >&2; }
skip() { say "SKIP: $*"; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root (apt-get for build dependencies, mount for the scratch root)"
command -v dpkg-buildpackage >/dev/null || skip "dpkg-buildpackage is missing (apt-get install dpkg-dev)"
command -v unshare >/dev/null || skip "unshare is missing (util-linux)"

started=$(date +%s.%N)

# -- build dependencies -----------------------------------------------------------------
deps=(debhelper dh-python python3-all pybuild-plugin-pyproject python3-setuptools
      python3-pyroute2 fakeroot dpkg-dev)
missing=()
for pkg in "${deps[@]}"; do
  dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
    || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing build dependencies: ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && \
         apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
    || { say "apt-get could not install ${missing[*]}"; exit 1; }
fi
deps_done=$(date +%s.%N)

if [ "$vendor" = auto ]; then
  candidate="$(apt-cache policy python3-pydantic 2>/dev/null | awk '/Candidate:/ {print $2}')"
  if [ -n "$candidate" ] && [ "$candidate" != "(none)" ] \
       && dpkg --compare-versions "$candidate" ge 2.5; then
    vendor=no
  else
    vendor=yes
  fi
  say "python3-pydantic here: ${candidate:-none}; vendoring pydantic 2: $vendor"
fi

# -- scratch source tree ----------------------------------------------------------------
work="$(mktemp -d /tmp/zoomd-deb.XXXXXX)"
cleanup() { [ -n "${KEEP:-}" ] && say "kept $work" || rm -rf "$work"; }
trap cleanup EXIT
version="$(sed -n '1s/^zoomd (\([^)]*\)).*/\1/p' "$repo/packaging/debian/changelog")"
src="$work/zoomd-$version"
mkdir -p "$src"
# Only what the package is built from: not tests/ (captured /sys trees hold symlink
# cycles that setuptools' package discovery would walk for minutes) nor benchmarks/.
parts=(pyproject.toml README.md zoomd policies packaging/man packaging/completion
       packaging/systemd)
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked files (as in the work tree): what a checkout holds, not stray files.
  (cd "$repo" && git ls-files -z --cached -- "${parts[@]}" \
     | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
     | tar --null -T - -cf -) | tar -C "$src" -xf -
else
  tar -C "$repo" --exclude=__pycache__ --exclude='*.egg-info' -cf - "${parts[@]}" \
    | tar -C "$src" -xf -
fi
rm -rf "$src/debian"
cp -rL "$repo/packaging/debian" "$src/debian"

profiles=""
if [ "$vendor" = yes ]; then
  [ -n "$pip_python" ] || { say "no python3 with pip to fetch pydantic wheels"; exit 1; }
  arch="$(dpkg --print-architecture)"
  case "$arch" in
    amd64) plat=x86_64 ;; arm64) plat=aarch64 ;; *) say "no manylinux wheels for $arch"; exit 1 ;;
  esac
  pyver="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  abi="cp${pyver/./}"
  "$pip_python" -m pip download --quiet --disable-pip-version-check \
      --dest "$src/debian/vendor-wheels" --only-binary=:all: --implementation cp \
      --python-version "$pyver" --abi "$abi" --platform "manylinux2014_$plat" \
      --platform "manylinux_2_17_$plat" --platform any 'pydantic>=2.5,<3' 2>"$work/pip.log" \
    || { cat "$work/pip.log" >&2; say "pip download of pydantic wheels failed"; exit 1; }
  say "vendored: $(cd "$src/debian/vendor-wheels" && ls | tr '\n' ' ')"
  profiles="pkg.zoomd.vendor"
fi

# -- build ------------------------------------------------------------------------------
build_start=$(date +%s.%N)
say "dpkg-buildpackage in $src (profiles: ${profiles:-none})"
if ! (cd "$src" && DEB_BUILD_PROFILES="$profiles" DEB_BUILD_OPTIONS=nocheck \
        dpkg-buildpackage -us -uc -b ${profiles:+-P"$profiles"}) >"$work/build.log" 2>&1; then
  tail -n 60 "$work/build.log" >&2
  say "dpkg-buildpackage failed (log above)"
  exit 1
fi
build_done=$(date +%s.%N)
deb="$(ls "$work"/zoomd_"$version"_*.deb)"
cp "$deb" "$outdir/"
deb="$outdir/$(basename "$deb")"
say "built $deb"
dpkg-deb --contents "$deb" > "$work/contents.txt"
# The labs (zoomdlab: mkswap, swapon, zram reset, qemu) never ship onto a host.
if grep -E 'zoomdlab|/zoomd/(lab|vmlab)/' "$work/contents.txt" >&2; then
  say "the package holds lab modules (above)"
  exit 1
fi

# -- install into a scratch root and run ------------------------------------------------
root="$work/root"
mkdir -p "$root/upper" "$root/work" "$root/merged"
cp "$deb" "$root/zoomd.deb"
check='
set -eu
m="$1"
mount -t overlay overlay -o "lowerdir=/,upperdir=$2/upper,workdir=$2/work" "$m"
mount --rbind /dev "$m/dev"
mount -t proc proc "$m/proc"
mount -t tmpfs tmpfs "$m/run"
mount -t tmpfs tmpfs "$m/tmp"
# No service starts from a chroot.
printf "#!/bin/sh\nexit 101\n" > "$m/usr/sbin/policy-rc.d"; chmod 755 "$m/usr/sbin/policy-rc.d"
cp "$2/zoomd.deb" "$m/tmp/zoomd.deb"
chroot "$m" dpkg -i /tmp/zoomd.deb
echo "--- zoomd --version:"
chroot "$m" zoomd --version
echo "--- zoomd check:"
chroot "$m" zoomd check | head -n 1
echo "--- conffiles:"
chroot "$m" dpkg-query -W -f="\${Conffiles}\n" zoomd
for f in /usr/bin/zoomd /etc/zoomd/zoomd.toml /lib/systemd/system/zoomd.service \
         /usr/share/man/man8/zoomd.8.gz /usr/share/man/man5/zoomd.toml.5.gz \
         /usr/share/bash-completion/completions/zoomd \
         /usr/share/zoomd/policies/zram-server.toml; do
  [ -e "$m$f" ] || { echo "missing after install: $f"; exit 1; }
done
for p in "$m"/usr/share/zoomd/policies/*.toml; do
  chroot "$m" zoomd check --file-only --config "${p#$m}" >/dev/null || { echo "zoomd check failed: $p"; exit 1; }
done
echo "--- every shipped policy passes zoomd check"
chroot "$m" dpkg -r zoomd >/dev/null
[ ! -e "$m/usr/bin/zoomd" ] || { echo "dpkg -r left /usr/bin/zoomd"; exit 1; }
echo "--- removed cleanly (conffile kept until purge: $(test -e "$m/etc/zoomd/zoomd.toml" && echo yes || echo no))"
'
if ! unshare -m --propagation private true 2>/dev/null; then
  skip "cannot make a private mount namespace here (unshare -m): install not checked; .deb at $deb"
fi
if ! unshare -m --propagation private sh -c \
     'mount -t overlay overlay -o "lowerdir=/,upperdir=$1/upper,workdir=$1/work" "$1/merged"' \
     sh "$root" 2>"$work/mount.log"; then
  skip "cannot mount an overlay of / here ($(cat "$work/mount.log")): install not checked; .deb at $deb"
fi
rm -rf "$root/upper" "$root/work"; mkdir -p "$root/upper" "$root/work"
if ! unshare -m --propagation private sh -c "$check" sh "$root/merged" "$root" \
     >"$work/install.log" 2>&1; then
  cat "$work/install.log" >&2
  say "installing or running the package in the scratch root failed (log above)"
  exit 1
fi
cat "$work/install.log" >&2
finished=$(date +%s.%N)

size=$(stat -c %s "$deb")
files=$(wc -l < "$work/contents.txt")
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }
printf 'zoomd-deb: path=%s size_bytes=%s files=%s vendored=%s deps_seconds=%s build_seconds=%s install_check_seconds=%s total_seconds=%s\n' \
  "$deb" "$size" "$files" "$vendor" "$(secs "$deps_done" "$started")" \
  "$(secs "$build_done" "$build_start")" "$(secs "$finished" "$build_done")" \
  "$(secs "$finished" "$started")"
