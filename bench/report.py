#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Turns the results directory of tools/bench.sh into the Markdown report:
# median of the rounds per target and job, ratios, Ballast's memory and CPU.
# Usage: report.py RESULTS_DIR OUT_FILE.  Prints the report and writes it
# into OUT_FILE between the bench markers (creating the file if needed).
import glob
import json
import os
import statistics
import sys

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
PEERS = ["nbdkit", "qemu-nbd", "nbd-server"]
NAMES = {"ballast": "Ballast", "nbdkit": "nbdkit file", "qemu-nbd": "qemu-nbd",
         "nbd-server": "nbd-server", "limit": "io_uring limit", "plain": "Ballast (second part)",
         "enc": "Ballast encrypted", "snap": "Ballast with snapshots"}
# job -> (label, fio direction, unit)
JOBS = [
    ("rr1", "4k randread QD1", "read", "IOPS"),
    ("rr32", "4k randread QD32", "read", "IOPS"),
    ("rw32", "4k randwrite QD32", "write", "IOPS"),
    ("rw32s", "4k randwrite QD32, flush every 32", "write", "IOPS"),
    ("sw8", "1 MiB seq write QD8", "write", "MiB/s"),
    ("sr8", "1 MiB seq read QD8", "read", "MiB/s"),
    ("sw4c", "1 MiB seq write, 4 connections x QD2", "write", "MiB/s"),
]


def load_fio(path):
    """fio's JSON; the nbd engine may print a line or two before it."""
    with open(path) as f:
        text = f.read()
    i = text.find("\n{")
    if not text.startswith("{"):
        if i < 0:
            return None
        text = text[i + 1:]
    try:
        return json.loads(text)["jobs"][0]
    except (ValueError, KeyError, IndexError):
        return None


def fio_metrics(job, direction):
    d = job[direction]
    pct = d.get("clat_ns", {}).get("percentile", {})
    return {
        "iops": d["iops"],
        "mibs": d["bw_bytes"] / 1048576.0,
        "p50": pct.get("50.000000", 0) / 1000.0,
        "p99": pct.get("99.000000", 0) / 1000.0,
        "bytes": job["read"]["io_bytes"] + job["write"]["io_bytes"],
    }


def open_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line for line in f if line.strip()]


def read_kv(path, sep=None):
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split(sep, 1)
                if len(parts) == 2:
                    out[parts[0]] = parts[1]
    return out


def fmt_tput(v, unit):
    if v is None:
        return "n/a"
    if unit == "IOPS":
        return "%.1fk" % (v / 1000.0) if v >= 1000 else "%.0f" % v
    return "%.0f" % v


def fmt_lat(m):
    if m is None:
        return "n/a"

    def one(us):
        return "%.0f" % us if us < 10000 else "%.1fk" % (us / 1000.0)
    return "%s / %s" % (one(m["p50"]), one(m["p99"]))


def ratio(a, b):
    if a is None or not b:
        return "n/a"
    return "%.2fx" % (a / b)


def main():
    res, out_path = sys.argv[1], sys.argv[2]
    meta = read_kv(os.path.join(res, "meta.tsv"), "\t")
    targets = meta.get("targets", "").split()
    notes = []
    if os.path.exists(os.path.join(res, "notes.tsv")):
        with open(os.path.join(res, "notes.tsv")) as f:
            notes = [line.rstrip("\n").split("\t", 2) for line in f if line.strip()]
    feats = read_kv(os.path.join(res, "features.txt"))

    # per (target, job): list of metric dicts over rounds
    runs = {}
    for path in glob.glob(os.path.join(res, "*.json")):
        base = os.path.basename(path)[:-5]
        t, j = base.split(".")[0], base.split(".")[1]
        direction = "write" if j == "fill" else next((x[2] for x in JOBS if x[0] == j), None)
        job = load_fio(path)
        if job is None or direction is None:
            notes.append([t, j, "unreadable fio output"])
            continue
        runs.setdefault((t, j), []).append(fio_metrics(job, direction))

    def median(t, j):
        rs = runs.get((t, j))
        if not rs:
            return None
        return {k: statistics.median(r[k] for r in rs) for k in rs[0]}

    copies = {}
    if os.path.exists(os.path.join(res, "copy.txt")):
        with open(os.path.join(res, "copy.txt")) as f:
            for line in f:
                t, d, _r, s0, s1 = line.split()
                copies.setdefault((t, d), []).append(float(s1) - float(s0))
    copy_mib = float(meta.get("copy_mib", "0"))

    cols = [t for t in ["ballast"] + PEERS + ["limit"] if t in targets]
    peers = [t for t in PEERS if t in targets]
    head = "| job | " + " | ".join(NAMES[t] for t in cols) + " | Ballast / best peer | Ballast / limit |"
    sep = "|---" * (len(cols) + 3) + "|"
    L = [BEGIN, "## Results", ""]
    L.append("- Date: %s" % meta.get("date", "?"))
    L.append("- Machine: %s CPUs (%s), %s RAM, %s, kernel %s" % (
        meta.get("nproc"), meta.get("cpu"), meta.get("ram"), meta.get("fs"), meta.get("kernel")))
    L.append("- Tools: %s" % meta.get("versions"))
    L.append("- Command: `%s` (exports of %s MiB, nbdcopy of %s MiB, each fio job %s s after a %s ms ramp, "
             "median of %s round(s); the whole run took %s s)" % (
                 meta.get("command"), meta.get("size_mib"), meta.get("copy_mib"), meta.get("runtime"),
                 meta.get("ramp_ms"), meta.get("rounds"), meta.get("elapsed")))
    L += ["", "### Throughput (higher is better)", "", head, sep]
    for j, label, _d, unit in JOBS:
        vals = {}
        for t in cols:
            m = median(t, j)
            vals[t] = None if m is None else (m["iops"] if unit == "IOPS" else m["mibs"])
        best = max((vals[t] for t in peers if vals[t] is not None), default=None)
        L.append("| %s (%s) | %s | %s | %s |" % (
            label, unit, " | ".join(fmt_tput(vals[t], unit) for t in cols),
            ratio(vals.get("ballast"), best), ratio(vals.get("ballast"), vals.get("limit"))))
    for d, label in (("in", "nbdcopy file to export, then flush"), ("out", "nbdcopy export to file")):
        vals = {}
        for t in cols:
            s = copies.get((t, d))
            vals[t] = copy_mib / statistics.median(s) if s else None
        best = max((vals[t] for t in peers if vals[t] is not None), default=None)
        L.append("| %s (MiB/s) | %s | %s | %s |" % (
            label, " | ".join(fmt_tput(vals[t], "MiB/s") for t in cols),
            ratio(vals.get("ballast"), best), ratio(vals.get("ballast"), vals.get("limit"))))
    L += ["", "The limit column runs the same fio jobs with `--ioengine=io_uring --direct=1` on a file "
          "of the same filesystem, and for nbdcopy copies the file to and from a file.",
          "", "### Completion latency, p50 / p99 in microseconds (lower is better)", "",
          "| job | " + " | ".join(NAMES[t] for t in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for j, label, _d, _u in JOBS:
        L.append("| %s | %s |" % (label, " | ".join(fmt_lat(median(t, j)) for t in cols)))

    kinds = [t for t in ("enc", "snap") if any(k[0] == t for k in runs)]
    if "plain" in targets or any(k[0] == "plain" for k in runs):
        nsnap = meta.get("nsnap", "?")
        label_of = {"enc": "encrypted", "snap": "%s snapshots" % nsnap}
        L += ["", "### Kinds of Ballast volume", "",
              "A second part of the same run, with the peers stopped and their files removed: the volume "
              "of the first part (plain), an encrypted volume (AES-256-XTS) and a volume with %s snapshots "
              "taken after its fill, all of one ballastd, the same fio jobs, %s round(s) (median), "
              "p50 / p99 latency in microseconds." % (nsnap, meta.get("kinds_rounds", "?")), "",
              "| job | plain | " + " | ".join("%s | %s / plain" % (label_of[k], label_of[k]) for k in kinds) + " |",
              "|---" * (2 + 2 * len(kinds)) + "|"]
        for j, label, _d, unit in JOBS:
            base = median("plain", j)
            bv = None if base is None else (base["iops"] if unit == "IOPS" else base["mibs"])
            cells = ["%s (%s)" % (fmt_tput(bv, unit), fmt_lat(base))]
            for k in kinds:
                m = median(k, j)
                v = None if m is None else (m["iops"] if unit == "IOPS" else m["mibs"])
                cells += ["%s (%s)" % (fmt_tput(v, unit), fmt_lat(m)), ratio(v, bv)]
            L.append("| %s (%s) | %s |" % (label, unit, " | ".join(cells)))

    mem = read_kv(os.path.join(res, "ballast-mem.txt"))
    if "ballast" in targets and mem:
        tck = float(mem.get("clk_tck", "100"))
        cpu = (int(mem.get("cpu_end", 0)) - int(mem.get("cpu_start", 0))) / tck
        moved = sum(r["bytes"] for (t, _j), rs in runs.items() if t == "ballast" for r in rs)
        moved += len(copies.get(("ballast", "in"), [])) * copy_mib * 1048576
        moved += len(copies.get(("ballast", "out"), [])) * copy_mib * 1048576
        gib = moved / 2.0 ** 30
        L += ["", "### Ballast's resources", ""]
        L.append("- RSS (VmRSS): %.1f MiB after start-up, %.1f MiB at the end; peak (VmHWM) %.1f MiB" % (
            int(mem.get("rss_before_kib", 0)) / 1024.0, int(mem.get("rss_after_kib", 0)) / 1024.0,
            int(mem.get("hwm_kib", 0)) / 1024.0))
        L.append("- CPU: %.1f s user+system over %.1f GiB moved: %.2f CPU s per GiB "
                 "(I/O done during fio's ramps is not counted in the GiB, so this leans high)" % (
                     cpu, gib, cpu / gib if gib else 0))
        ticks = {}
        for line in open_lines(os.path.join(res, "ballast-cpu.txt")):
            j, tk = line.split()
            ticks[j] = ticks.get(j, 0) + int(tk)
        L += ["", "| job | GiB moved | CPU s | CPU s per GiB |", "|---|---|---|---|"]
        for j, label, _d, _u in [("fill", "fill (1 MiB seq write QD8)", "", "")] + JOBS:
            b = sum(r["bytes"] for r in runs.get(("ballast", j), []))
            if b and j in ticks:
                g = b / 2.0 ** 30
                L.append("| %s | %.2f | %.2f | %.2f |" % (label, g, ticks[j] / tck, ticks[j] / tck / g))
        for d in ("in", "out"):
            n = len(copies.get(("ballast", d), []))
            if n and ("copy-" + d) in ticks:
                g = n * copy_mib / 1024.0
                c = ticks["copy-" + d] / tck
                L.append("| nbdcopy %s | %.2f | %.2f | %.2f |" % (d, g, c, c / g))
    if feats:
        L += ["", "Multi-conn advertised: " + ", ".join(
            "%s %s" % (NAMES.get(t, t), v.split()[-1]) for t, v in sorted(feats.items()))]
    if notes:
        L += ["", "### What could not be measured", ""]
        for t, j, why in notes:
            L.append("- %s, %s: %s" % (NAMES.get(t, t), j, why))
    L.append(END)
    block = "\n".join(L) + "\n"
    sys.stdout.write(block)

    if os.path.exists(out_path):
        with open(out_path) as f:
            old = f.read()
    else:
        old = "# Benchmarks\n\nProduced by `make bench` (tools/bench.sh).\n\n"
    a, b = old.find(BEGIN), old.find(END)
    if a >= 0 and b > a:
        new = old[:a] + block + old[b + len(END) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    with open(out_path, "w") as f:
        f.write(new)


if __name__ == "__main__":
    main()
