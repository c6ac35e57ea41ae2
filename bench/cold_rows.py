#!/usr/bin/env python3
"""The cold-start rows of scripts/bench's table, from one bench/coldstart.py JSON result.

    python3 bench/cold_rows.py target/bench/coldstart.json

Cost per million push events on Lambda, from the measured durations. Assumptions, stated in the
rows and in docs/performance.md: US East (N. Virginia) on-demand prices, arm64 (Graviton), the
first tier: $0.20 per million requests and $0.0000133334 per GB-second; duration billed per
started millisecond, initialisation included (Lambda bills the init phase). Every event is
taken to be a cold start (exec to posted response, the dearest case); memory is 128 MB, the
smallest Lambda setting, for both: the Python handler's peak RSS is under it too. Durations are
this machine's, where each process had a whole core; at 128 MB Lambda gives a function about a
fourteenth of a vCPU, which stretches both sides' CPU time alike.
"""

import json
import math
import sys

REQUEST_PER_MILLION = 0.20
GB_SECOND_ARM64 = 0.0000133334
MEMORY_MB = 128


def per_million(duration_ms):
    billed_s = math.ceil(duration_ms) / 1000
    return REQUEST_PER_MILLION + 1e6 * billed_s * MEMORY_MB / 1024 * GB_SECOND_ARM64


def cell(x):
    return (f"median {x['median_ms']:.1f} ms, p90 {x['p90_ms']:.1f} ms "
            f"(init {x['init_median_ms']:.1f} ms), peak RSS {x['peak_rss_mb']:.1f} MiB")


def main():
    r = json.load(open(sys.argv[1]))
    floor, rust, emb, std = r["floor"], r["rust"], r["rust-embedded"], r["rust-standin"]
    py, py_std = r["python"], r["python-standin"]
    rows = [
        ("cold start, floor: bare lambda_runtime function answering `{}`", cell(floor),
         "exec + Runtime API, nothing else"),
        ("cold start, Rust push bootstrap, instant DynamoDB stand-in", cell(std),
         "two TransactWriteItems answered `{}`"),
        ("cold start, Rust push bootstrap, embedded store", cell(emb), "target <= 25 ms"),
        ("cold start, Rust push bootstrap, DynamoDB on moto", cell(rust),
         "two TransactWriteItems to moto"),
        ("cold start, Python 3.11 boto3 handler, instant DynamoDB stand-in", cell(py_std),
         "one TransactWriteItems answered `{}`"),
        ("cold start, Python 3.11 boto3 handler, DynamoDB on moto", cell(py),
         "one TransactWriteItems to moto"),
        ("cold start ratio, Rust push (stand-in) / floor",
         f"{std['median_ms'] / floor['median_ms']:.2f}x", "target <= 2.5x"),
        ("cold start ratio, Python / Rust push, both on the stand-in",
         f"{py_std['median_ms'] / std['median_ms']:.0f}x", "target >= 50x"),
        ("cold start ratio, Python / Rust push, both on moto",
         f"{py['median_ms'] / rust['median_ms']:.1f}x", ""),
        ("peak RSS, Rust push on the stand-in", f"{std['peak_rss_mb']:.1f} MiB",
         "target <= 12 MiB"),
        ("cost per million push events, every one a cold start (stand-in durations)",
         f"Rust ${per_million(std['median_ms']):.3f}, Python ${per_million(py_std['median_ms']):.3f}",
         "arm64, 128 MB, us-east-1: $0.20/M requests + $0.0000133334/GB-s, 1 ms billing"),
    ]
    for name, figure, note in rows:
        print(f"| {name} | {figure} | {note} |")


if __name__ == "__main__":
    main()
