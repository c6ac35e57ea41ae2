"""Checks a scripts/load run and prints its figures.

Reads the two wrk summaries (bench/mixed-load.lua's JSON line), the server's RSS samples and the
embedded store's journal, and fails (exit 1) on any violation:

- every answer was the one its class expects (wrk side), no 5xx, no socket error, no timeout;
- every new push answered `applied` has exactly one receipt (done, applied), one image record
  (push_count 1), one tag and one planned deployment; nothing else was recorded: no receipt,
  image or tag for a duplicate, a wrongly authenticated or a malformed request;
- memory: while records are added, RSS grows by no more than the records themselves account
  for (bytes of RSS per recorded event over the second half of the mixed phase, at most
  RSS_PER_LIVE_BYTE times the bytes the store holds per event: the embedded store keeps every
  key in memory, with where its item sits in the journal, and the text of the few items that
  name a running image); with no new records (the steady phase) it stays flat (at most
  STEADY_GROWTH_MIB over the phase, after a short warm-up).
"""

import argparse
import json
import sys

# The store holds each key's two strings and a map entry (the key, and the item's journal offset
# and length, or its text); the text only for items with a `running` attribute. Allocator
# rounding and map nodes add to those bytes.
ENTRY_BYTES = 72
RUNNING_ATTR = '"running":'
RSS_PER_LIVE_BYTE = 2.0
STEADY_GROWTH_MIB = 4.0
STEADY_WARMUP_S = 3.0
MIB = 1024 * 1024


def wrk_summary(path):
    lines = [line for line in open(path) if line.startswith("{")]
    if not lines:
        sys.exit(f"{path}: no summary from wrk (did it run?)")
    return json.loads(lines[-1])


def samples(path):
    """(time, RSS bytes, journal bytes) every second."""
    out = []
    for line in open(path):
        parts = line.split()
        if len(parts) == 3:
            out.append((float(parts[0]), int(parts[1]) * 1024, int(parts[2])))
    return out


def slope(points):
    """Least-squares slope of (x, y) points."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / var if var else 0.0


# The attributes checked, per kind of item; the rest is only counted.
KEPT = ("status", "outcome", "push_count", "digest")


def live_items(journal):
    """The store's final items, as the journal leaves them, and the journal's size: {(pk, sk):
    (bytes the store holds for the item, {checked attributes})}. Items are slimmed as they are
    read: a long run leaves millions of them."""
    items = {}
    lines = size = 0
    with open(journal, "rb") as f:
        for line in f:
            lines += 1
            size += len(line)
            for pk, sk, item in json.loads(line):
                if item is None:
                    items.pop((pk, sk), None)
                else:
                    text = json.dumps(item, separators=(",", ":"))
                    held = ENTRY_BYTES + len(pk) + len(sk)
                    if RUNNING_ATTR in text:
                        held += len(text)
                    items[(pk, sk)] = (held, {k: item[k] for k in KEPT if k in item})
    return items, lines, size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mixed", required=True)
    ap.add_argument("--steady", required=True)
    ap.add_argument("--rss", required=True)
    ap.add_argument("--phases", required=True)
    ap.add_argument("--journal", required=True)
    ap.add_argument("--machine", default="")
    ap.add_argument("--reads", help="what the second process's reads of the state dir found")
    a = ap.parse_args()

    mixed, steady = wrk_summary(a.mixed), wrk_summary(a.steady)
    phases = dict(line.split() for line in open(a.phases) if line.strip())
    phases = {k: float(v) for k, v in phases.items()}
    sampled = samples(a.rss)
    rss = [(t, r) for t, r, _ in sampled]
    problems = []

    # 1. Every answer as its class expects, from the wrk side.
    for run in (mixed, steady):
        name = run["mode"]
        if run["violations"]:
            problems.append(f"{name}: {run['violations']} unexpected answers, e.g. {run['examples']}")
        if run["lost"]:
            problems.append(f"{name}: {run['lost']} requests never answered")
        errors = {k: v for k, v in run["errors"].items() if v}
        if errors:
            problems.append(f"{name}: socket errors {errors}")
        for cls, answers in run["classes"].items():
            for answer, n in answers.items():
                if answer.startswith("5"):
                    problems.append(f"{name}: {n} x {answer} for {cls}")

    # 2. The store: exactly the new pushes that were answered, each recorded once.
    items, journal_lines, journal_bytes = live_items(a.journal)
    expected, maybe = set(), set()
    for t in mixed["threads"]:
        expected.update(f"load-{t['thread']}-{n}" for n in range(1, t["applied"] + 1))
        maybe.update(t["unanswered_valid"])
    receipts = {pk.split("#", 2)[2]: item for (pk, sk), (_, item) in items.items() if pk.startswith("EVT#")}
    images = {sk[2:]: item for (pk, sk), (_, item) in items.items()
              if pk.startswith("IMG#") and sk.startswith("D#") and "#" not in sk[2:]}
    tags = {sk[2:]: item for (pk, sk), (_, item) in items.items() if pk.startswith("IMG#") and sk.startswith("T#")}
    deployments = [item for (pk, sk), (_, item) in items.items() if pk.startswith("SVC#") and sk.startswith("DEP#")]

    def digest_of(event_id):
        _, t, n = event_id.split("-")
        return f"sha256:{int(t):08x}{int(n):056x}"

    def tag_of(event_id):
        _, t, n = event_id.split("-")
        return f"1.{t}.{n}"

    missing = [i for i in expected if i not in receipts]
    if missing:
        problems.append(f"{len(missing)} applied pushes have no receipt, e.g. {sorted(missing)[:3]}")
    extra = [i for i in receipts if i not in expected and i not in maybe]
    if extra:
        problems.append(f"{len(extra)} receipts for requests that were not applied, e.g. {sorted(extra)[:3]}")
    not_done = [i for i in expected if i in receipts and (receipts[i].get("status"), receipts[i].get("outcome")) != ("done", "applied")]
    if not_done:
        problems.append(f"{len(not_done)} receipts not done/applied, e.g. {receipts[not_done[0]]}")
    recorded = expected | {i for i in maybe if i in receipts}
    want_digests = {digest_of(i) for i in recorded}
    if set(images) != want_digests:
        problems.append(
            f"images: {len(set(images) - want_digests)} unexpected, {len(want_digests - set(images))} missing")
    twice = [d for d, item in images.items() if item.get("push_count") != 1]
    if twice:
        problems.append(f"{len(twice)} images pushed more than once, e.g. {images[twice[0]]}")
    want_tags = {tag_of(i): digest_of(i) for i in recorded}
    if {t: item.get("digest") for t, item in tags.items()} != want_tags:
        problems.append(f"tags: {len(tags)} recorded, {len(want_tags)} expected, or a tag points elsewhere")
    planned = [d for d in deployments if d.get("outcome") == "planned"]
    if len(planned) != len(recorded) or len(deployments) != len(recorded):
        problems.append(f"deployments: {len(deployments)} ({len(planned)} planned) for {len(recorded)} pushes")

    # 2b. The second process's reads during the load: each one succeeded.
    reads = [line.split() for line in open(a.reads) if line.strip()] if a.reads else []
    read_ok = [int(r[1]) for r in reads if r[0] == "ok"]
    if a.reads and (not read_ok or len(read_ok) != len(reads)):
        problems.append(f"reads of the state dir by a second process: {len(reads) - len(read_ok)} of "
                        f"{len(reads)} failed (see reader.log)")
    # Its last read came in the steady phase, after the last new push: it must see every item.
    if read_ok and read_ok[-1] != len(items):
        problems.append(f"the second process's last read saw {read_ok[-1]} items, the store holds {len(items)}")

    # 3. Memory.
    live_bytes = sum(held for held, _ in items.values())
    per_event_live = live_bytes / max(len(recorded), 1)
    m0, m1 = phases["mixed_start"], phases["mixed_end"]
    s0, s1 = phases["steady_start"], phases["steady_end"]
    in_mixed = [(t, r) for t, r in rss if m0 <= t <= m1]
    applied_rate = len(expected) / mixed["seconds"]
    # RSS against the journal's size over the second half: the journal grows by the same bytes
    # for every recorded event, whatever the rate, so the slope is RSS per journal byte.
    second_half = [(j, r) for t, r, j in sampled if (m0 + m1) / 2 <= t <= m1]
    journal_per_event = journal_bytes / max(len(recorded), 1)
    per_event_rss = slope(second_half) * journal_per_event
    if per_event_rss > RSS_PER_LIVE_BYTE * per_event_live:
        problems.append(
            f"RSS grew {per_event_rss:.0f} B per recorded event over the second half, more than "
            f"{RSS_PER_LIVE_BYTE} x the {per_event_live:.0f} B the store holds per event")
    in_steady = [(t, r) for t, r in rss if s0 + STEADY_WARMUP_S <= t <= s1]
    steady_growth = (in_steady[-1][1] - in_steady[0][1]) if len(in_steady) >= 2 else 0
    steady_trend = slope(in_steady) * (in_steady[-1][0] - in_steady[0][0]) if len(in_steady) >= 2 else 0
    if max(steady_growth, steady_trend) > STEADY_GROWTH_MIB * MIB:
        problems.append(
            f"RSS grew {steady_growth / MIB:.1f} MiB (trend {steady_trend / MIB:.1f} MiB) in the steady "
            f"phase, with nothing new recorded (limit {STEADY_GROWTH_MIB} MiB)")

    # 4. The table.
    def count(run, cls):
        return sum(run["classes"].get(cls, {}).values())

    def answers(run, cls):
        return ", ".join(f"{n} x {a}" for a, n in sorted(run["classes"].get(cls, {}).items())) or "-"

    classes = ["valid", "duplicate", "bad_token", "no_token", "invalid_json", "nested_json",
               "unknown_format", "invalid_reference"]
    start = in_mixed[0][1] if in_mixed else 0
    peak = max(r for _, r in rss) if rss else 0
    end_mixed = in_mixed[-1][1] if in_mixed else 0
    end = rss[-1][1] if rss else 0
    print()
    print(f"imagehook serve under mixed load{' — ' + a.machine if a.machine else ''}")
    print()
    print("| class | expected | mixed phase | steady phase |")
    print("| --- | --- | --- | --- |")
    for cls in classes:
        print(f"| {cls} | {mixed['expected'][cls]} | {answers(mixed, cls)} | {answers(steady, cls)} |")
    print()
    print("| measure | mixed phase | steady phase |")
    print("| --- | --- | --- |")
    for run_label, key in [("duration", "seconds")]:
        print(f"| {run_label} | {mixed[key]:.1f} s | {steady[key]:.1f} s |")
    print(f"| requests | {mixed['requests']} ({mixed['rps']:.0f}/s) | {steady['requests']} ({steady['rps']:.0f}/s) |")
    print(f"| new events recorded | {len(expected)} ({applied_rate:.0f}/s) | 0 |")
    print(f"| latency p50 / p99 / max | {mixed['p50_ms']:.2f} / {mixed['p99_ms']:.2f} / {mixed['max_ms']:.1f} ms "
          f"| {steady['p50_ms']:.2f} / {steady['p99_ms']:.2f} / {steady['max_ms']:.1f} ms |")
    print(f"| socket errors, timeouts, 5xx | {sum(mixed['errors'].values())} | {sum(steady['errors'].values())} |")
    print(f"| unexpected answers | {mixed['violations']} | {steady['violations']} |")
    steady_start = f"{in_steady[0][1] / MIB:.1f}" if in_steady else "-"
    print(f"| RSS start / end | {start / MIB:.1f} / {end_mixed / MIB:.1f} MiB "
          f"| {steady_start} / {end / MIB:.1f} MiB |")
    print(f"| RSS growth | {per_event_rss:.0f} B per recorded event (second half; store holds {per_event_live:.0f} B/event) "
          f"| {steady_growth / MIB:+.1f} MiB (trend {steady_trend / MIB:+.1f} MiB) |")
    print(f"| RSS peak | {peak / MIB:.1f} MiB | |")
    print(f"| store | {len(items)} items, journal {journal_bytes / MIB:.0f} MiB in {journal_lines} lines | |")
    if a.reads:
        seen = f"; items seen {read_ok[0]} → {read_ok[-1]}" if read_ok else ""
        print(f"| reads by a second process (`imagehook state`) | {len(read_ok)} of {len(reads)} succeeded{seen} | |")
    print()
    if problems:
        print(f"FAILED: {len(problems)} violations")
        for p in problems:
            print(f"  - {p}")
        return 1
    print("OK: every valid event recorded exactly once, every other request refused as expected, memory flat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
