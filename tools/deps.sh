#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the Debian packages Ballast builds and tests with, if missing.
set -eu
PKGS="build-essential pkg-config liburing-dev librocksdb-dev libssl-dev libzstd-dev
libcurl4-openssl-dev libjansson-dev libnbd-dev libnbd-bin python3-libnbd nbdkit nbdfuse
nbd-client nbd-server qemu-utils qemu-system-x86 fio busybox-static e2fsprogs
linux-image-cloud-amd64 cpio awscli util-linux procps psmisc socat restic"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
# s3rver, the S3 endpoint of the integration tests: npm, in an ignored dir.
S3DEPS=$(cd "$(dirname "$0")/.." && pwd)/tests/.deps
if [ ! -x "$S3DEPS/node_modules/.bin/s3rver" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "deps: npm not found: cannot install s3rver (S3 tests will fail)" >&2
    elif ! npm install --no-audit --no-fund --silent --prefix "$S3DEPS" s3rver@3 >/dev/null 2>&1; then
        echo "deps: 'npm install s3rver@3' into $S3DEPS failed (S3 tests will fail)" >&2
    fi
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages:$missing (run as root to install)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null
