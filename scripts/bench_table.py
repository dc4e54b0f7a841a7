#!/usr/bin/env python3
"""Print criterion results as a markdown table, with each group's ratio to
its baseline ("dcap-qvl direct" where a group has one).

usage: bench_table.py [CRITERION_DIR] [GROUP_REGEX]"""
import json
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
only = re.compile(sys.argv[2]) if len(sys.argv) > 2 else None
rows = []
for est in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    if only and not only.fullmatch(bench["group_id"]):
        continue
    e = json.loads(est.read_text())
    rows.append((bench["group_id"], bench.get("function_id") or bench["title"],
                 e["mean"]["point_estimate"], e["mean"]["confidence_interval"]))

def fmt(ns):
    return f"{ns / 1e6:.3f} ms" if ns >= 1e5 else f"{ns / 1e3:.1f} µs"

has_base = any(r[1] == "dcap-qvl direct" for r in rows)
print("| group | benchmark | mean | 95% CI |" + (" ratio to dcap-qvl direct |" if has_base else ""))
print("|---|---|---|---|" + ("---|" if has_base else ""))
for group in sorted({r[0] for r in rows}):
    members = [r for r in rows if r[0] == group]
    base = next((r[2] for r in members if r[1] == "dcap-qvl direct"), None)
    for _, name, mean, ci in members:
        ratio = (f" {mean / base:.3f} |" if base else " - |") if has_base else ""
        print(f"| {group} | {name} | {fmt(mean)} | {fmt(ci['lower_bound'])} .. {fmt(ci['upper_bound'])} |{ratio}")
