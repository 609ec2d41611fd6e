#!/bin/sh
# SPDX-License-Identifier: MIT
# `make run`: start ballastd on the embedded default data dir.
# BALLAST_DATA (default ./ballast-data) and BALLAST_PORT (default 10809)
# override the defaults; extra arguments go to ballastd.
set -eu
cd "$(dirname "$0")/.."
DATA=${BALLAST_DATA:-./ballast-data}
PORT=${BALLAST_PORT:-10809}
echo "ballastd: data in $DATA, NBD on 127.0.0.1:$PORT and $DATA/nbd.sock, control on $DATA/ballast.sock"
echo "create a volume:  ./ballast volume create vm1 --size 10G"
echo "attach it:        nbdinfo nbd://127.0.0.1:$PORT/vm1"
echo "                  qemu-system-x86_64 ... -drive file=nbd://127.0.0.1:$PORT/vm1,format=raw,if=virtio"
echo "snapshot, export: ./ballast snapshot create vm1 --name s1 && ./ballast snapshot export vm1@s1"
echo "                  (objects under $DATA/objects; restore with ./ballast volume create vm2 --from URL#ID)"
echo "stop with Ctrl-C (in-flight requests are answered and flushed first)"
exec ./ballastd --data-dir "$DATA" --listen "tcp:127.0.0.1:$PORT" --listen "unix:$DATA/nbd.sock" "$@"
