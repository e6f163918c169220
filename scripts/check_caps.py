#!/usr/bin/env python3
"""Re-check every cap from a `gavat simulate --events FILE` log (schema: docs/events.md).

Usage: python3 scripts/check_caps.py events.jsonl

Checks, per user and using only the file: no send after an opt-out; the local hour of each
send is in its allowed hours; sends per local day within the daily limit; the gap to the
previous send at least the cooldown; send days at least `period_days` apart. Exits 1 and
lists the first violations if any.
"""
import json
import sys
from collections import defaultdict


def main(path):
    sends_by_day = defaultdict(int)
    last = {}
    last_day = {}
    opted_out = set()
    violations = []
    sends = 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                e = json.loads(line)
            except json.JSONDecodeError as err:
                sys.exit(f"{path}:{n}: not JSON: {err}")
            user, at = e["user"], e["at_unix"]
            local = at + e["utc_offset"] * 60
            day, hour = local // 86400, (local % 86400) // 3600
            if e["kind"] == "opt_out":
                opted_out.add(user)
                continue
            if e["kind"] != "send":
                continue
            sends += 1
            caps = e["caps"]
            broken = []
            if user in opted_out:
                broken.append("after opt-out")
            if hour not in caps["allowed_hours"]:
                broken.append(f"hour {hour} not allowed")
            sends_by_day[(user, day)] += 1
            if sends_by_day[(user, day)] > caps["daily_limit"]:
                broken.append("daily limit")
            if user in last and at - last[user] < caps["cooldown_secs"]:
                broken.append("cooldown")
            if user in last_day and last_day[user] != day and day - last_day[user] < caps["period_days"]:
                broken.append("frequency")
            last[user], last_day[user] = at, day
            if broken:
                violations.append(f"{path}:{n}: user {user}: {', '.join(broken)}")
    print(f"{sends} sends checked, {len(violations)} violations")
    for v in violations[:20]:
        print(v)
    return 1 if violations else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
