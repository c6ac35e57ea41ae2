#!/usr/bin/env python3
"""Ten thousand events on one digest through `imagehook serve` (embedded store, on loopback).

A push of a new tag, a quarantine and a release (256-byte reasons), over and over, one request
at a time on one keep-alive connection: what an old, busy digest costs. Prints, for the first and
the last 1,002 events, the median and p99 latency and the journal bytes per event, their ratios,
and the largest item the store holds. Exits 1 when the last events are more than 1.5 x slower
or grow the journal more than 1.05 x faster than the first.

    cargo build --release --bin imagehook
    python3 bench/one_digest.py --bin target/release/imagehook
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TOKEN = "one-digest-token"
REPO = "registry.example.com/shop/api"
DIGEST = "sha256:" + "5a1e" * 16
WINDOW = 1002  # a multiple of the three-event cycle


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def padded(prefix, n, length):
    head = f"{prefix}{n:06}-"
    return head + "x" * (length - len(head))


def event(n):
    if n % 3 == 0:
        return "/push", {"image": f"{REPO}:{padded('t', n, 64)}", "digest": DIGEST,
                         "id": padded("p", n, 64)}
    return "/quarantine", {"image": f"{REPO}@{DIGEST}", "quarantine": n % 3 == 1,
                           "reason": padded("r", n, 256), "id": padded("q", n, 64)}


def largest_item(journal):
    """The longest item text among the journal's live items: each line is
    `[[pk, sk, item-or-null], ...]`, and the last line naming a key holds its item."""
    live = {}
    with open(journal, encoding="utf-8") as f:
        for line in f:
            for pk, sk, item in json.loads(line):
                live[(pk, sk)] = None if item is None else len(json.dumps(item, separators=(",", ":")))
    return max(v for v in live.values() if v is not None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("IMAGEHOOK_BIN", "target/release/imagehook"))
    ap.add_argument("--windows", type=int, default=10, help="windows of 1,002 events (10: 10,020)")
    a = ap.parse_args()

    state = tempfile.mkdtemp(prefix="imagehook-one-digest-")
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
           "AUTH_MODE": "token", "WEBHOOK_SECRETS": TOKEN, "DEPLOY_MODE": "dry-run",
           "LOG_LEVEL": "error"}
    server = subprocess.Popen([a.bin, "--state-dir", state, "serve", "--addr", f"127.0.0.1:{port}"],
                              env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        journal = os.path.join(state, "store.jsonl")
        latencies, marks = [], []
        total = WINDOW * a.windows
        for n in range(total):
            if n % WINDOW == 0:
                marks.append(os.path.getsize(journal) if os.path.exists(journal) else 0)
            path, body = event(n)
            data = json.dumps(body).encode()
            t0 = time.perf_counter()
            conn.request("POST", path, data, {"Content-Type": "application/json",
                                              "Authorization": f"Bearer {TOKEN}"})
            resp = conn.getresponse()
            reply = resp.read()
            latencies.append(time.perf_counter() - t0)
            if resp.status != 200 or json.loads(reply)["events"][0]["outcome"] != "applied":
                print(f"event {n}: {resp.status} {reply[:300]!r}", file=sys.stderr)
                return 1
        marks.append(os.path.getsize(journal))
    finally:
        server.terminate()
        server.wait()

    def window(lat):
        return statistics.median(lat) * 1e3, sorted(lat)[int(len(lat) * 0.99)] * 1e3

    (p50_first, p99_first), (p50_last, p99_last) = window(latencies[:WINDOW]), window(latencies[-WINDOW:])
    bytes_first, bytes_last = (marks[1] - marks[0]) / WINDOW, (marks[-1] - marks[-2]) / WINDOW
    largest = largest_item(journal)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"{total:,} events on one digest, {os.cpu_count()} cores, {cpu}")
    print()
    print("| events | p50 | p99 | journal bytes per event |")
    print("| --- | --- | --- | --- |")
    print(f"| first {WINDOW:,} | {p50_first:.2f} ms | {p99_first:.2f} ms | {bytes_first:,.0f} |")
    print(f"| last {WINDOW:,} | {p50_last:.2f} ms | {p99_last:.2f} ms | {bytes_last:,.0f} |")
    print(f"| last / first | {p50_last / p50_first:.2f} | {p99_last / p99_first:.2f} | {bytes_last / bytes_first:.3f} |")
    print()
    print(f"largest item held: {largest:,} bytes of JSON; journal {marks[-1] / 2**20:.1f} MiB")
    status = 0
    if p50_last > 1.5 * p50_first:
        print("FAILED: the last events are more than 1.5 x slower than the first")
        status = 1
    if bytes_last > 1.05 * bytes_first:
        print("FAILED: the journal grows faster as the digest ages")
        status = 1
    subprocess.run(["rm", "-rf", state], check=False)
    return status


if __name__ == "__main__":
    sys.exit(main())
