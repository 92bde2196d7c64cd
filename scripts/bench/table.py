#!/usr/bin/env python3
"""Render one results TSV of scripts/bench.sh as a markdown table.

  table.py RESULTS.tsv [--vs TOOL]...

TSV columns: op, tool, wall_s, cpu_s, rss_mb, size_mb, status, note[, moved_mb]
status: "ok", "mismatch" (a restore whose files differ in count/bytes from the
source, or whose rows or bytes differ) or "failed ..." (the command failed;
numbers are meaningless).
Rows keep the order of the file; "x strongbox" is the wall-time ratio of the
row's tool to strongbox's row for the same operation. When any row has a
moved_mb, a "MiB/s" column (moved_mb / wall) is added before it.
--vs TOOL adds a line below the table: strongbox's wall time / TOOL's for each
operation both ran (below 1: strongbox is faster).
"""

import argparse


def fmt(v, digits):
    try:
        x = float(v)
    except ValueError:
        return v or "-"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def size_fmt(v):
    try:
        x = float(v)
    except ValueError:
        return v or "-"
    if x < 10:
        return f"{x:.2f}"
    if x < 100:
        return f"{x:.1f}"
    return f"{x:,.0f}"


def main(path, vs=()):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            parts = (line.split("\t") + [""] * 9)[:9]
            rows.append(parts)
    rate = any(r[8] for r in rows)
    sb = {}
    for op, tool, wall, _cpu, _rss, _size, status, _note, _moved in rows:
        if tool == "strongbox" and status in ("ok", "mismatch") and op not in sb:
            sb[op] = float(wall)
    if rate:
        out = ["| operation | tool | wall s | CPU s | peak RSS MB | output MB | MiB/s | × strongbox |",
               "|---|---|---:|---:|---:|---:|---:|---:|"]
    else:
        out = ["| operation | tool | wall s | CPU s | peak RSS MB | output MB | × strongbox |",
               "|---|---|---:|---:|---:|---:|---:|"]
    for op, tool, wall, cpu, rss, size, status, note, moved in rows:
        label = (tool + (f" ({note})" if note else "")).replace("|", "\\|")
        if status.startswith("failed"):
            out.append(f"| {op} | {label} | {status} | failed | failed | failed |"
                       + (" failed |" if rate else "") + " failed |")
            continue
        size_cell = size_fmt(size)
        if status == "mismatch":
            size_cell += " ⚠ files differ from source"
        if op in sb and sb[op] > 0:
            ratio = f"{float(wall) / sb[op]:.2f}"
        else:
            ratio = "n/a"
        rate_cell = ""
        if rate:
            try:
                rate_cell = f" {float(moved) / float(wall):,.0f} |"
            except (ValueError, ZeroDivisionError):
                rate_cell = " - |"
        out.append(f"| {op} | {label} | {fmt(wall, 2)} | {fmt(cpu, 2)} | {fmt(rss, 0)} | {size_cell} |"
                   f"{rate_cell} {ratio} |")
    summary = []
    for other in vs:
        cells = []
        for op in dict.fromkeys(r[0] for r in rows):
            theirs = [r for r in rows if r[0] == op and r[1] == other and r[6] in ("ok", "mismatch")]
            if op in sb and theirs and float(theirs[0][2]) > 0:
                cells.append(f"{op} {sb[op] / float(theirs[0][2]):.2f}×")
        if cells:
            summary.append(f"- strongbox ÷ {other} (wall time): " + ", ".join(cells))
    if summary:
        out += [""] + summary
    print("\n".join(out))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("--vs", action="append", default=[], metavar="TOOL")
    args = ap.parse_args()
    main(args.results, args.vs)
