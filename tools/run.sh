#!/bin/sh
# SPDX-License-Identifier: MIT
# `make run`: start ballastd on the embedded default data dir.
set -eu
cd "$(dirname "$0")/.."
DATA=${BALLAST_DATA:-./ballast-data}
echo "ballastd: data in $DATA, NBD on 127.0.0.1:10809 and $DATA/nbd.sock, control on $DATA/ballast.sock"
echo "create a volume:  ./ballast volume create vm1 --size 10G"
echo "attach it:        nbdinfo nbd://127.0.0.1:10809/vm1   (qemu: -drive file=nbd://127.0.0.1:10809/vm1,format=raw)"
echo "stop with Ctrl-C (SIGINT/SIGTERM flush and exit cleanly)"
exec ./ballastd --data-dir "$DATA"
