#!/bin/bash
# SPDX-License-Identifier: MIT
# Memory of ballastd serving a thin volume: its RSS (VmRSS and VmHWM from
# /proc) after start-up, after creating a 16 TiB volume, and after writing
# 1 GiB into it as 16,384 writes of 64 KiB at random cluster-aligned offsets
# over the whole 16 TiB (then a flush); and the volume's extent index memory
# per allocated cluster, as `ballast volume show` reports it (index_bytes).
# Prints a Markdown table; not a test.
#
# Environment (all optional):
#   BENCH_DIR=DIR    parent of the scratch directory (default /var/tmp)
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/tools/bench-lib.sh"

bench_setup memory "$PY"
bench_start

kib() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$BAL_PID/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

rss0=$(kib VmRSS)
bal volume create huge --size 16T >/dev/null
rss1=$(kib VmRSS)
log "writing 1 GiB as 16,384 scattered 64 KiB writes"
$PY - "$SOCK" <<'PYEOF'
import os, random, sys
import nbd
h = nbd.NBD()
h.set_export_name("huge")
h.connect_unix(sys.argv[1])
rnd = random.Random(7)
clusters = h.get_size() // 65536
buf = os.urandom(65536)
for off in rnd.sample(range(clusters), 16384):
    h.pwrite(buf, off * 65536)
h.flush()
h.shutdown()
PYEOF
rss2=$(kib VmRSS)
hwm=$(kib VmHWM)
read -r alloc index < <(bal --json volume show huge |
	$PY -c 'import json, sys; v = json.load(sys.stdin); print(v["allocated"], v["index_bytes"])')
clusters=$((alloc / 65536))

cat <<EOT
| ballastd | RSS |
|---|---|
| after start-up | $(mib "$rss0") MiB |
| with a 16 TiB thin volume | $(mib "$rss1") MiB |
| after 1 GiB written to it (16,384 scattered 64 KiB writes) | $(mib "$rss2") MiB (peak $(mib "$hwm") MiB) |

Extent index of the volume: $index bytes for $clusters allocated clusters, $(awk -v a="$index" -v n="$clusters" 'BEGIN { printf "%.1f", a / n }') bytes per cluster.
Produced by \`tools/bench-memory.sh\` on $(date -u +%Y-%m-%d), $(nproc) CPUs, $(uname -r).
EOT
