#!/usr/bin/env bash
# Installs what `make dist` (scripts/dist.sh) and `make dist-check` (scripts/dist_check.py)
# need and the machine lacks, so that both run on a fresh Debian/Ubuntu with rustup:
#
#   build: the aarch64-unknown-linux-gnu standard library (rustup); zig from PyPI's `ziglang`
#          (into a venv under target-dist/, found by cargo-zigbuild through
#          CARGO_ZIGBUILD_PYTHON_PATH); cargo-zigbuild, cargo-deb and cargo-generate-rpm
#          from crates.io; binutils for aarch64 (the debug-info split).
#   check: qemu-user and libc6-arm64-cross (the AArch64 artifacts run for real), readelf,
#          dpkg (the .deb unpacked), rpm (the .rpm checked and installed into a scratch root).
#
# Usage: scripts/dist_tools.sh build|check|all
# Versions are pinned so that every machine builds with the same tools.
set -euo pipefail

cd "$(dirname "$0")/.."

CARGO_ZIGBUILD_VERSION=0.24.1
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
ZIGLANG_VERSION=0.15.2
VENV=${DIST_TOOLS_VENV:-target-dist/tools/venv}

what=${1:-all}
case "$what" in
build | check | all) ;;
*)
    echo "usage: $0 build|check|all" >&2
    exit 2
    ;;
esac

say() { echo "== dist-tools: $*" >&2; }

# Debian packages, installed only when one is missing (apt-get update once, then).
apt_updated=0
need_deb() {
    local missing=()
    local p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        "${sudo[@]}" apt-get update -qq
        apt_updated=1
    fi
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# A cargo subcommand at exactly the pinned version.
need_crate() {
    local crate=$1 version=$2 bin=$3
    if command -v "$bin" >/dev/null 2>&1 &&
        "$bin" --version 2>/dev/null | grep -qF "$version"; then
        return
    fi
    say "cargo install --locked $crate@$version"
    nice cargo install --locked --quiet "$crate" --version "=$version"
}

build_tools() {
    if ! command -v cargo >/dev/null 2>&1 || ! command -v rustup >/dev/null 2>&1; then
        echo "dist-tools: cargo and rustup are needed (https://rustup.rs)" >&2
        exit 1
    fi
    need_deb binutils binutils-aarch64-linux-gnu python3-venv dpkg
    if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
        say "rustup target add aarch64-unknown-linux-gnu"
        rustup target add aarch64-unknown-linux-gnu
    fi
    if ! "$VENV/bin/python3" -m ziglang version 2>/dev/null | grep -qx "$ZIGLANG_VERSION"; then
        say "zig $ZIGLANG_VERSION from PyPI (ziglang) into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check \
            "ziglang==$ZIGLANG_VERSION"
    fi
    need_crate cargo-zigbuild "$CARGO_ZIGBUILD_VERSION" cargo-zigbuild
    need_crate cargo-deb "$CARGO_DEB_VERSION" cargo-deb
    need_crate cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION" cargo-generate-rpm
}

check_tools() {
    need_deb qemu-user libc6-arm64-cross binutils dpkg python3 rpm
}

case "$what" in
build) build_tools ;;
check) check_tools ;;
all)
    build_tools
    check_tools
    ;;
esac
say "$what tools ready"
