#!/usr/bin/env python3
"""Collects the fault-matrix figures the row tests printed (target/fault-figures.jsonl, one
JSON object per row run, written by tests/integration/fault_report.rs) into the markdown table
docs/reliability.md shows. The last run of a row wins; rows are sorted by number.

    python3 scripts/fault_figures.py [target/fault-figures.jsonl] > /tmp/figures.md
"""
import json
import re
import sys


def row_key(row):
    match = re.match(r"(\d+)(.*)", row)
    return (int(match.group(1)), match.group(2)) if match else (10**6, row)


def cell(items):
    return "; ".join(items) if items else "—"


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "target/fault-figures.jsonl"
    rows = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            try:
                report = json.loads(line)
            except json.JSONDecodeError as error:
                sys.exit(f"{path}:{number}: not a JSON line: {error}")
            rows[report["row"]] = report
    print("| row | run | seed | fsync | faults fired | figures (bad / total) | measured |")
    print("|---|---|---|---|---|---|---|")
    for row in sorted(rows, key=row_key):
        r = rows[row]
        fired = [f"{k} {v:,}" for k, v in sorted(r.get("faults_fired", {}).items())]
        fired += [f"fail point {k} {v:,}" for k, v in sorted(r.get("failpoints_hit", {}).items())]
        figures = [f"{k} {v['bad']:,} / {v['total']:,}" for k, v in r.get("figures", {}).items()]
        measures = [f"{k} {v}" for k, v in sorted(r.get("measures", {}).items())]
        print(f"| {row} | {r['run_kind']} | {r['seed']} | {r.get('fsync_policy') or '—'} | {cell(fired)} | "
              f"{cell(figures)} | {cell(measures)} |")


if __name__ == "__main__":
    main()
