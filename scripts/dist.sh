#!/usr/bin/env bash
# make dist: the release artifacts, for x86_64 and aarch64, in dist/:
#
#   flb-pssession-<version>-<arch>-linux-gnu.tar.gz        the stripped plugin and
#       pssession-replay (glibc 2.17 builds), the C header, fluent-bit-conf/, README, LICENSE
#   flb-pssession-<version>-<arch>-linux-gnu.debug.tar.gz  their split debug info (the .so
#       and the binary name it by .gnu_debuglink)
#   flb-pssession_<version>-1_<amd64|arm64>.deb            (cargo-deb)
#   flb-pssession-<version>-1.<x86_64|aarch64>.rpm         (cargo-generate-rpm)
#   SHA256SUMS
#
# Built with cargo-zigbuild against glibc 2.17 (--target <arch>-unknown-linux-gnu.2.17), in
# target-dist/ so that it never takes the lock of target/. scripts/dist_tools.sh installs the
# tools it needs. Check the result with `make dist-check` (scripts/dist_check.sh).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

ARCHS=${DIST_ARCHS:-"x86_64 aarch64"}
GLIBC=2.17
export CARGO_TARGET_DIR=$root/target-dist
DIST=$root/dist
PKG=$CARGO_TARGET_DIR/pkg # what cargo-deb and cargo-generate-rpm package (Cargo.toml)

say() { echo "== dist: $*" >&2; }

scripts/dist_tools.sh build
export CARGO_ZIGBUILD_PYTHON_PATH=$root/target-dist/tools/venv/bin/python3

version=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "flb-pssession"))')
# Reproducible archives: every file's time is the last commit's.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

rm -rf "$DIST"
mkdir -p "$DIST"

tarball() { # tarball OUT.tar.gz DIR NAME: DIR/NAME as a reproducible gzip'd tar
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
        --format=gnu -C "$2" -cf - "$3" | gzip -9 -n >"$1"
}

for arch in $ARCHS; do
    triple=$arch-unknown-linux-gnu
    case "$arch" in
    x86_64) objcopy=objcopy ;;
    aarch64) objcopy=aarch64-linux-gnu-objcopy ;;
    *)
        echo "dist: unknown architecture $arch" >&2
        exit 2
        ;;
    esac

    say "$arch: cargo zigbuild --target $triple.$GLIBC"
    nice cargo zigbuild --release --locked --target "$triple.$GLIBC" \
        -p flb-pssession --lib -p pssession-tools --bin pssession-replay
    out=$CARGO_TARGET_DIR/$triple/release

    name=flb-pssession-$version-$arch-linux-gnu
    stage=$CARGO_TARGET_DIR/stage/$arch
    rm -rf "$stage"
    mkdir -p "$stage/$name/include" "$stage/$name.debug"

    # The plugin under the name Fluent Bit requires, and the replay CLI beside it (where
    # it looks for the plugin first). Debug info moves to NAME.debug, named by
    # .gnu_debuglink, as `make build` does.
    cp "$out/libflb_filter_pssession.so" "$stage/$name/flb-filter_pssession.so"
    cp "$out/pssession-replay" "$stage/$name/pssession-replay"
    for f in flb-filter_pssession.so pssession-replay; do
        "$objcopy" --only-keep-debug "$stage/$name/$f" "$stage/$name.debug/$f.debug"
        (cd "$stage/$name.debug" && "$objcopy" --strip-debug --add-gnu-debuglink="$f.debug" "$stage/$name/$f")
    done
    chmod 0644 "$stage/$name/flb-filter_pssession.so" "$stage/$name.debug"/*.debug
    cp include/flb_filter_pssession.h "$stage/$name/include/"
    cp -R fluent-bit-conf "$stage/$name/fluent-bit-conf"
    cp README.md LICENSE "$stage/$name/"
    cp LICENSE "$stage/$name.debug/"

    tarball "$DIST/$name.tar.gz" "$stage" "$name"
    tarball "$DIST/$name.debug.tar.gz" "$stage" "$name.debug"

    # The packages take the same stripped files (Cargo.toml's [package.metadata.deb] and
    # [package.metadata.generate-rpm] name them under target-dist/pkg/).
    rm -rf "$PKG"
    mkdir -p "$PKG"
    cp "$stage/$name/flb-filter_pssession.so" "$stage/$name/pssession-replay" "$PKG/"

    say "$arch: cargo deb"
    cargo deb --no-build --no-strip --locked --target "$triple" --output "$DIST/" -p flb-pssession
    say "$arch: cargo generate-rpm"
    # gzip payload: the rpm of CentOS 7 and Amazon Linux 2 reads no zstd.
    cargo generate-rpm --arch "$arch" --output "$DIST/" \
        --payload-compress gzip
done

sums=$(cd "$DIST" && find . -maxdepth 1 -type f -printf '%f\n' | LC_ALL=C sort | xargs sha256sum)
printf '%s\n' "$sums" >"$DIST/SHA256SUMS"
say "artifacts in dist/:"
(cd "$DIST" && ls -l)
