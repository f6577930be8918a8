#!/usr/bin/env python3
"""Draws BENCHMARKS.md's chart from the criterion results of the last benchmark runs.

    cargo bench --bench layer && cargo bench -p machine-auth-peer-bench
    python3 benches/chart.py            # writes benches/cost-per-request.svg

Reads `<target>/criterion/<group>/<bench>/new/estimates.json` (the median of each benchmark) for
the `layer` and `peer` groups and draws one horizontal bar per path, on a logarithmic scale, with
its median written beside it. Only the standard library is used; paths come from `cargo metadata`.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

# (group, benchmark, label, colour): the paths of a request, cheapest first within each kind.
BARS = [
    ("layer", "bare", "bare route (no auth)", "#9e9e9e"),
    ("layer", "hit", "layer, cache hit (RS256)", "#2e7d32"),
    ("layer", "opaque_cached", "layer, opaque token, result cached", "#2e7d32"),
    ("layer", "raw_verify_rs256", "raw aws-lc verify, RS256", "#9e9e9e"),
    ("layer", "miss_rs256", "layer, cache miss, RS256", "#1565c0"),
    ("layer", "jsonwebtoken_decode", "jsonwebtoken::decode, RS256", "#ef6c00"),
    ("peer", "jwt_authorizer", "jwt-authorizer 0.15, RS256 (Axum 0.7)", "#ef6c00"),
    ("layer", "raw_verify_eddsa", "raw aws-lc verify, EdDSA", "#9e9e9e"),
    ("layer", "miss_eddsa", "layer, cache miss, EdDSA", "#1565c0"),
    ("layer", "raw_verify_es256", "raw aws-lc verify, ES256", "#9e9e9e"),
    ("layer", "miss_es256", "layer, cache miss, ES256", "#1565c0"),
    ("layer", "raw_post", "one raw loopback POST (reqwest)", "#9e9e9e"),
    ("layer", "opaque_uncached", "layer, opaque token, uncached", "#1565c0"),
]


def criterion_home() -> Path:
    metadata = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(json.loads(metadata.stdout)["target_directory"]) / "criterion"


def median_ns(home: Path, group: str, bench: str):
    path = home / group / bench / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def duration(ns: float) -> str:
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"


def svg(rows) -> str:
    label_width, bar_width, row_height, top = 300, 420, 26, 56
    width = label_width + bar_width + 110
    height = top + row_height * len(rows) + 40
    low = math.floor(math.log10(min(ns for _, ns, _ in rows)))
    high = math.ceil(math.log10(max(ns for _, ns, _ in rows)))

    def x(ns: float) -> float:
        return label_width + bar_width * (math.log10(ns) - low) / (high - low)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
        "Cost per request by path (median, logarithmic scale)</text>",
    ]
    for exponent in range(low, high + 1):
        ns = 10**exponent
        gx = x(ns)
        out.append(
            f'<line x1="{gx:.1f}" y1="{top - 8}" x2="{gx:.1f}" '
            f'y2="{top + row_height * len(rows)}" stroke="#e0e0e0"/>'
        )
        out.append(
            f'<text x="{gx:.1f}" y="{top - 12}" text-anchor="middle" fill="#616161">'
            f"{duration(ns)}</text>"
        )
    for i, (label, ns, colour) in enumerate(rows):
        y = top + i * row_height
        out.append(
            f'<text x="{label_width - 8}" y="{y + 17}" text-anchor="end">{label}</text>'
        )
        out.append(
            f'<rect x="{label_width}" y="{y + 5}" width="{x(ns) - label_width:.1f}" '
            f'height="{row_height - 10}" fill="{colour}"/>'
        )
        out.append(f'<text x="{x(ns) + 6:.1f}" y="{y + 17}">{duration(ns)}</text>')
    legend_y = top + row_height * len(rows) + 26
    for j, (colour, text) in enumerate(
        [
            ("#9e9e9e", "floor"),
            ("#2e7d32", "layer, cached"),
            ("#1565c0", "layer, verified"),
            ("#ef6c00", "others"),
        ]
    ):
        lx = label_width + j * 120
        out.append(f'<rect x="{lx}" y="{legend_y - 11}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{lx + 18}" y="{legend_y}">{text}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> int:
    home = criterion_home()
    rows, missing = [], []
    for group, bench, label, colour in BARS:
        ns = median_ns(home, group, bench)
        if ns is None:
            missing.append(f"{group}/{bench}")
        else:
            rows.append((label, ns, colour))
    if missing:
        print(f"no criterion result for {', '.join(missing)} under {home}", file=sys.stderr)
        print("run: cargo bench --bench layer && cargo bench -p machine-auth-peer-bench", file=sys.stderr)
        return 1
    output = Path(__file__).with_name("cost-per-request.svg")
    output.write_text(svg(rows))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
