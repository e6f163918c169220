#!/usr/bin/env python3
"""Re-check every cap from a `gavat simulate --events FILE` log (schema: docs/events.md).

Usage: python3 scripts/check_caps.py events.jsonl [--exposure-limit N]

Local time: a line with a `time_zone` (an IANA name) is read in that zone with Python's
`zoneinfo` (the system tz database), so a user's local day and hour follow DST — 23- and
25-hour days, a day without local midnight, a skipped day — and the line's `utc_offset` must
equal the zone's offset at that instant; a line without one (`null`, or an older file) is
read at its fixed `utc_offset`.

Checks, per user and using only the file, for direct messages (sends without a group): no
send after an opt-out; the local hour of each send is in its allowed hours; sends per local
day within the daily limit; the gap to the previous send at least the cooldown; send days at
least `period_days` apart. A member's share of a group post (a send with a `group`) is not
a direct message: it is checked only against the member-exposure limit — at most N group
posts seen per local day, over all groups (default 3, the engine's default; pass the
run's `member_exposure_limit` if it differs) — and never counts toward the direct caps.
Exits 1 and lists the first violations if any.
"""
import json
import sys
from collections import defaultdict
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EPOCH = date(1970, 1, 1)
_zones = {}


def zone(name):
    """The zoneinfo zone `name`, loaded once."""
    if name not in _zones:
        _zones[name] = ZoneInfo(name)
    return _zones[name]


def local_time(at, offset_minutes, zone_name):
    """(local day since 1970-01-01, local hour, offset in force in minutes) of `at`."""
    if zone_name is None:
        local = at + offset_minutes * 60
        return local // 86400, (local % 86400) // 3600, offset_minutes
    t = datetime.fromtimestamp(at, timezone.utc).astimezone(zone(zone_name))
    offset = int(t.utcoffset().total_seconds()) // 60
    return (t.date() - EPOCH).days, t.hour, offset


def main(path, exposure_limit=3):
    sends_by_day = defaultdict(int)
    shares_by_day = defaultdict(int)
    shares = 0
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
            try:
                day, hour, offset = local_time(at, e["utc_offset"], e.get("time_zone"))
            except (ZoneInfoNotFoundError, ValueError) as err:
                sys.exit(f"{path}:{n}: field time_zone: {e.get('time_zone')!r}: {err}")
            if offset != e["utc_offset"]:
                violations.append(
                    f"{path}:{n}: user {user}: utc_offset {e['utc_offset']} is not "
                    f"{e['time_zone']}'s offset at that instant ({offset})"
                )
            if e["kind"] == "opt_out":
                opted_out.add(user)
                continue
            if e["kind"] != "send":
                continue
            if e.get("group") is not None:
                shares += 1
                shares_by_day[(user, day)] += 1
                if shares_by_day[(user, day)] > exposure_limit:
                    violations.append(
                        f"{path}:{n}: user {user}: {shares_by_day[(user, day)]} group posts in a local day, "
                        f"exposure limit {exposure_limit}"
                    )
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
    most = max(shares_by_day.values(), default=0)
    print(f"{sends} sends checked, {len(violations)} violations, "
          f"{shares} group post shares checked (at most {most} a member a local day)")
    for v in violations[:20]:
        print(v)
    return 1 if violations else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    limit = 3
    if len(args) == 3 and args[1] == "--exposure-limit" and args[2].isdigit():
        limit = int(args[2])
        args = args[:1]
    if len(args) != 1:
        sys.exit(__doc__)
    sys.exit(main(args[0], limit))
