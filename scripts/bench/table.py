#!/usr/bin/env python3
"""Render one results TSV of scripts/bench.sh as a markdown table.

TSV columns: op, tool, wall_s, cpu_s, rss_mb, size_mb, status, note
status: "ok", "mismatch" (a restore whose files differ in count/bytes from the
source) or "failed ..." (the command failed; numbers are meaningless).
Rows keep the order of the file; "x strongbox" is the wall-time ratio of the
row's tool to strongbox's row for the same operation.
"""

import sys


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


def main(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            parts = (line.split("\t") + [""] * 8)[:8]
            rows.append(parts)
    sb = {}
    for op, tool, wall, _cpu, _rss, _size, status, _note in rows:
        if tool == "strongbox" and status in ("ok", "mismatch"):
            sb[op] = float(wall)
    out = ["| operation | tool | wall s | CPU s | peak RSS MB | output MB | × strongbox |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for op, tool, wall, cpu, rss, size, status, note in rows:
        label = tool + (f" ({note})" if note else "")
        if status.startswith("failed"):
            out.append(f"| {op} | {label} | {status} | failed | failed | failed | failed |")
            continue
        size_cell = size_fmt(size)
        if status == "mismatch":
            size_cell += " ⚠ files differ from source"
        if op in sb and sb[op] > 0:
            ratio = f"{float(wall) / sb[op]:.2f}"
        else:
            ratio = "n/a"
        out.append(f"| {op} | {label} | {fmt(wall, 2)} | {fmt(cpu, 2)} | {fmt(rss, 0)} | {size_cell} | {ratio} |")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
