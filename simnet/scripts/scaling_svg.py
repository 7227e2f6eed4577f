#!/usr/bin/env python3
"""Draws the live scaling plot (BENCHMARKS.md) from `simnet live` report.json files.

usage: scaling_svg.py OUT.svg DIR [DIR ...]   (each DIR holds a report.json)
Two panels over node count: submit->receipt latency p50/p95/p99 (ms, log scale), and peak RSS
sum (MiB) with CPU seconds.
"""
import json, math, sys

out, dirs = sys.argv[1], sys.argv[2:]
rows = sorted((json.load(open(d + "/report.json")) for d in dirs), key=lambda r: r["nodes"])
W, H, L, T, PW, PH = 820, 340, 60, 40, 320, 240
xs = [r["nodes"] for r in rows]
xmax = max(xs)
def X(n, left): return left + PW * n / xmax
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       '<rect width="100%" height="100%" fill="white"/>',
       f'<text x="{L}" y="20" font-size="14">simnet live, harsh faults, {rows[0]["planned"]} requests at the same offered rate, by node count</text>']
def panel(left, title, series, log):
    vals = [v for _, _, ys in series for v in ys if v > 0]
    lo, hi = (min(vals), max(vals)) if vals else (1, 10)
    if log:
        lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
        Y = lambda v: T + PH - PH * (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        ticks = [10 ** e for e in range(int(math.log10(lo)), int(math.log10(hi)) + 1)]
    else:
        lo, hi = 0, hi * 1.1
        Y = lambda v: T + PH - PH * v / hi
        ticks = [hi * i / 4 for i in range(5)]
    svg.append(f'<text x="{left}" y="{T - 8}">{title}</text>')
    svg.append(f'<line x1="{left}" y1="{T + PH}" x2="{left + PW}" y2="{T + PH}" stroke="black"/>')
    svg.append(f'<line x1="{left}" y1="{T}" x2="{left}" y2="{T + PH}" stroke="black"/>')
    for t in ticks:
        svg.append(f'<text x="{left - 6}" y="{Y(t) + 4:.1f}" text-anchor="end" font-size="10">{t:g}</text>')
        svg.append(f'<line x1="{left}" y1="{Y(t):.1f}" x2="{left + PW}" y2="{Y(t):.1f}" stroke="#ddd"/>')
    for n in xs:
        svg.append(f'<text x="{X(n, left):.1f}" y="{T + PH + 14}" text-anchor="middle" font-size="10">{n}</text>')
    svg.append(f'<text x="{left + PW / 2}" y="{T + PH + 30}" text-anchor="middle">nodes</text>')
    for i, (name, colour, ys) in enumerate(series):
        pts = " ".join(f"{X(n, left):.1f},{Y(v):.1f}" for n, v in zip(xs, ys))
        svg.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for n, v in zip(xs, ys):
            svg.append(f'<circle cx="{X(n, left):.1f}" cy="{Y(v):.1f}" r="3" fill="{colour}"/>')
        svg.append(f'<text x="{left + 8}" y="{T + 14 + 14 * i}" fill="{colour}">{name}</text>')
panel(L, "submit → receipt latency (ms, log)", [
    ("p50", "#2a9d3a", [r["latency"]["p50_ms"] for r in rows]),
    ("p95", "#d08a00", [r["latency"]["p95_ms"] for r in rows]),
    ("p99", "#c0392b", [r["latency"]["p99_ms"] for r in rows])], True)
panel(L + PW + 100, "peak RSS (MiB, all nodes) and CPU (s)", [
    ("peak RSS MiB", "#4a78b5", [r["resources"]["peak_rss_sum_mib"] for r in rows]),
    ("CPU s", "#7b4ab5", [r["resources"]["cpu_seconds"] for r in rows])], False)
svg.append("</svg>")
open(out, "w").write("\n".join(svg) + "\n")
