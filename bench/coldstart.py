#!/usr/bin/env python3
"""Cold start of the Rust push bootstrap against an equivalent Python handler.

Each run execs a fresh process against a local Lambda Runtime API (this file) that serves one
API Gateway event, and times it from just before exec to the moment its response is posted:
init, the first `next`, the handler and its DynamoDB writes, all of it; "init" alone is exec to
the first `next`. Peak RSS is the process's VmHWM once it has answered (MiB). The two functions take
turns run by run, so drift on the machine hits both alike.

After init the figure is mostly the DynamoDB endpoint's latency. moto's TransactWriteItems
slows as its table grows (each run adds a receipt), so give every harness run a fresh table
(bench/make_table.py) and compare figures taken at the same run count. With --embedded the
bootstrap also runs a third contender without TABLE_NAME, on the embedded store (STATE_DIR, new
for each run as a new environment's /tmp is): the function's own cost without a network store.

    TABLE_NAME=... AUTH_MODE=token WEBHOOK_SECRETS=... DEPLOY_MODE=dry-run \\
    DEPLOY_RULES_FILE=... AWS_ENDPOINT_URL=... AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \\
    python3 bench/coldstart.py --bootstrap target/lambda/imagehook-push/bootstrap \\
        --python-handler bench/python_handler.py --event events/acr-push.json --runs 30 [--json]

--floor BIN adds a bare `lambda_runtime` function (bench/floor, answering `{}`): exec, the
Runtime API and nothing else, the floor the push function's own start is measured against.
--standin adds the push bootstrap and the Python handler again with DynamoDB answered by an
instant stand-in on loopback (`{}` to every call, one write per answer): their own cost, with
no store latency in it.

The function's configuration comes from this process's environment. The Python handler runs
as `<--python> -m awslambdaric <module>.handler` in its own directory, so --python (default:
this interpreter) needs awslambdaric and boto3 (bench/requirements.txt).
"""

import argparse
import base64
import copy
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

API = "/2018-06-01/runtime"
FUNCTION = "imagehook-push"
REGION = "us-east-1"
ARN = f"arn:aws:lambda:{REGION}:123456789012:function:{FUNCTION}"


class Invocation:
    """One run's single event, and what the function posted back."""

    def __init__(self, event: bytes):
        self.request_id = str(uuid.uuid4())
        self.event = event
        self.served = False
        self.lock = threading.Lock()
        self.posted = threading.Event()
        self.torn_down = threading.Event()
        self.kind = None  # "response", "error" or "init error"
        self.body = b""
        self.next_at = 0
        self.posted_at = 0


class RuntimeApi(BaseHTTPRequestHandler):
    # Keep-alive, as the real Runtime API: clients reuse one connection for next and response.
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        inv = self.server.invocation
        if self.path != f"{API}/invocation/next":
            return self.reply(404, b'{"errorType":"NotFound"}')
        at = time.perf_counter_ns()
        with inv.lock:
            first, inv.served = not inv.served, True
        if not first:
            # A function polls again as soon as it has answered; like Lambda freezing it, hold
            # the call until the process is gone, then drop the connection without a reply.
            inv.torn_down.wait()
            self.close_connection = True
            return
        inv.next_at = at
        deadline = int(time.time() * 1000) + 30_000
        self.reply(200, inv.event, [
            ("Lambda-Runtime-Aws-Request-Id", inv.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(deadline)),
            ("Lambda-Runtime-Invoked-Function-Arn", ARN),
            ("Lambda-Runtime-Trace-Id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0"),
        ])

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        at = time.perf_counter_ns()
        inv = self.server.invocation
        kind = {
            f"{API}/init/error": "init error",
            f"{API}/invocation/{inv.request_id}/response": "response",
            f"{API}/invocation/{inv.request_id}/error": "error",
        }.get(self.path)
        if kind is None:
            return self.reply(404, b'{"errorType":"InvalidRequestID"}')
        if not inv.posted.is_set():
            inv.kind, inv.body, inv.posted_at = kind, body, at
            inv.posted.set()
        self.reply(202, b'{"status":"OK"}')


class Instant(BaseHTTPRequestHandler):
    """DynamoDB's JSON protocol answered with `{}`: no item, or a transaction written."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        # One write: headers and body in two segments meet delayed ACKs (40 ms).
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )


def serve(handler):
    """`handler` on an ephemeral loopback port, in a background thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Server(ThreadingHTTPServer):
    def __init__(self, invocation):
        self.invocation = invocation
        super().__init__(("127.0.0.1", 0), RuntimeApi)

    def handle_error(self, request, client_address):
        # Every run ends by killing the function, which resets the connections it kept open.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def lambda_env(base, function: str) -> dict:
    """`base` with the variables Lambda sets for a function."""
    return dict(base, **{
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function}",
        "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,  # Lambda sets both; boto3 reads only this one
    })


def free_event(template: dict) -> bytes:
    """The API Gateway event with a new ACR event id, so each run records a new event."""
    event = copy.deepcopy(template)
    raw = event["body"]
    if event.get("isBase64Encoded"):
        raw = base64.b64decode(raw)
    body = json.loads(raw)
    if not isinstance(body, dict) or "id" not in body:
        sys.exit("the event's body has no top-level `id` to make unique per run")
    body["id"] = str(uuid.uuid4())
    raw = json.dumps(body, separators=(",", ":"))
    event["body"] = base64.b64encode(raw.encode()).decode() if event.get("isBase64Encoded") else raw
    headers = event.get("headers") or {}
    for name in [h for h in headers if h.lower() == "content-length"]:
        headers[name] = str(len(raw.encode()))
    return json.dumps(event).encode()


def run_once(cmd, cwd, env, event, timeout, allow_duplicate=False):
    """Returns ms from exec to the posted response, ms from exec to the first `next` (init),
    peak RSS in MB, and the response body."""
    inv = Invocation(event)
    # A server, and so a port, per run: a killed function's last request can still be in
    # flight, and must not take the next run's event.
    server = Server(inv)
    # A short poll interval: shutdown() waits for it, between runs.
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}")
    try:
        return invoke(inv, cmd, cwd, env, timeout, allow_duplicate)
    finally:
        inv.torn_down.set()
        server.shutdown()
        server.server_close()


def invoke(inv, cmd, cwd, env, timeout, allow_duplicate=False):
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter_ns()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        exited = None
        deadline = time.monotonic() + timeout
        while not inv.posted.wait(0.01):
            # WNOHANG keeps the child's rusage for the final wait4 if it is still running.
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                exited = (status, rusage)
                break
            if time.monotonic() > deadline:
                break
        hwm = None
        if exited is None:
            hwm = peak_rss_mb(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            _, status, rusage = os.wait4(proc.pid, 0)
        else:
            status, rusage = exited
        proc.returncode = -1  # reaped above: keep Popen from waiting on a pid that is gone

        def fail(why):
            log.seek(0)
            output = log.read().decode(errors="replace")[-4000:]
            sys.exit(f"{' '.join(map(str, cmd))}: {why}\n"
                     f"posted body: {inv.body.decode(errors='replace') or '(none)'}\n"
                     f"process output (tail):\n{output}")

        if not inv.posted.is_set():
            asked = (f"it was handed the event {(inv.next_at - start) / 1e6:.0f} ms after exec"
                     if inv.next_at else "it never asked for the event")
            fail(f"exited with status {status} before posting a response ({asked})" if exited
                 else f"posted nothing within {timeout} s ({asked})")
        if inv.kind != "response":
            fail(f"posted an {inv.kind}")
        try:
            response = json.loads(inv.body)
            payload = response.get("body") or ""
            if response.get("isBase64Encoded"):
                payload = base64.b64decode(payload)
            payload = json.loads(payload) if payload else {}
        except (ValueError, AttributeError) as e:
            fail(f"the response is not an API Gateway proxy response: {e}")
        if response.get("statusCode") != 200:
            fail(f"statusCode {response.get('statusCode')}, expected 200")
        outcomes = [e.get("outcome") for e in payload.get("events", [])] if isinstance(payload, dict) else []
        if "duplicate" in outcomes and not allow_duplicate:
            fail("the event was taken for a duplicate: each run must record a new one")
    rss = hwm if hwm is not None else rusage.ru_maxrss / 1024
    return (inv.posted_at - start) / 1e6, (inv.next_at - start) / 1e6, rss, payload


def peak_rss_mb(pid):
    """The process's own peak RSS (VmHWM), read while it waits for its next event. The child's
    ru_maxrss would not do: it counts the pages of this interpreter, forked before the exec."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def p90(values):
    """Nearest-rank: a value that was measured, not interpolated between two runs."""
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def summary(times, inits, rss):
    return {
        "runs": len(times),
        "median_ms": statistics.median(times),
        "p90_ms": p90(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "init_median_ms": statistics.median(inits),
        "peak_rss_mb": max(rss),
        "median_rss_mb": statistics.median(rss),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", type=Path, help="the Rust function's bootstrap executable")
    ap.add_argument("--python-handler", type=Path, help="a Python module with handler(event, context)")
    ap.add_argument("--python", default=sys.executable, help="interpreter with awslambdaric and boto3")
    ap.add_argument("--event", type=Path, required=True, help="API Gateway event (JSON)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed runs first, so the first timed one does not pay for a cold page cache")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds a run may take")
    ap.add_argument("--embedded", action="store_true",
                    help="also run the bootstrap on the embedded store (STATE_DIR, a new one per run)"
                         " instead of TABLE_NAME")
    ap.add_argument("--floor", type=Path, help="a bare lambda_runtime function (bench/floor)")
    ap.add_argument("--standin", action="store_true",
                    help="also run the bootstrap and the Python handler against an instant"
                         " DynamoDB stand-in")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if not (args.bootstrap or args.python_handler or args.floor) or args.runs < 1:
        ap.error("give --bootstrap, --python-handler, --floor or several, and --runs >= 1")

    template = json.loads(args.event.read_text())
    env = lambda_env(os.environ, FUNCTION)
    contenders = {}
    if args.floor:
        contenders["floor"] = ([str(args.floor.resolve())], None, lambda: env)
    standin_env = None
    if args.standin:
        standin = serve(Instant)
        standin_env = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{standin.server_address[1]}",
                           TABLE_NAME=env.get("TABLE_NAME", "bench"))
    state_root = tempfile.TemporaryDirectory(prefix="imagehook-coldstart-")
    if args.bootstrap:
        bootstrap = [str(args.bootstrap.resolve())]
        contenders["rust"] = (bootstrap, None, lambda: env)
        if args.embedded:
            # A fresh environment's /tmp is empty: every run opens a new embedded store.
            def embedded_env():
                fresh = {k: v for k, v in env.items() if k != "TABLE_NAME"}
                fresh["STATE_DIR"] = tempfile.mkdtemp(dir=state_root.name)
                return fresh
            contenders["rust-embedded"] = (bootstrap, None, embedded_env)
        if standin_env:
            contenders["rust-standin"] = (bootstrap, None, lambda: standin_env)
    if args.python_handler:
        handler = args.python_handler.resolve()
        # Lambda's task root is read-only, so the handler is compiled on every cold start there
        # too; and no __pycache__ is left beside it.
        py_env = dict(env, PYTHONDONTWRITEBYTECODE="1")
        py_cmd = [args.python, "-m", "awslambdaric", f"{handler.stem}.handler"]
        contenders["python"] = (py_cmd, str(handler.parent), lambda: py_env)
        if standin_env:
            py_standin = dict(standin_env, PYTHONDONTWRITEBYTECODE="1")
            contenders["python-standin"] = (py_cmd, str(handler.parent), lambda: py_standin)

    samples = {name: ([], [], []) for name in contenders}
    for i in range(args.warmup + args.runs):
        for name, (cmd, cwd, cenv) in contenders.items():
            figures = run_once(cmd, cwd, cenv(), free_event(template), args.timeout)[:3]
            if i >= args.warmup:
                for sample, figure in zip(samples[name], figures):
                    sample.append(figure)

    state_root.cleanup()
    result = {name: summary(*s) for name, s in samples.items()}
    if "rust" in result and "python" in result:
        result["ratio_median"] = result["python"]["median_ms"] / result["rust"]["median_ms"]
    if "floor" in result:
        for name in ("rust", "rust-embedded", "rust-standin"):
            if name in result:
                result[f"floor_ratio_{name}"] = result[name]["median_ms"] / result["floor"]["median_ms"]
    if "rust-standin" in result and "python-standin" in result:
        result["ratio_median_standin"] = (result["python-standin"]["median_ms"]
                                          / result["rust-standin"]["median_ms"])
    if "rust-embedded" in result and "python" in result:
        result["ratio_median_embedded"] = (result["python"]["median_ms"]
                                           / result["rust-embedded"]["median_ms"])
    if args.json:
        print(json.dumps(result))
        return
    print(f"cold start, {args.runs} runs each ({args.warmup} warm-up), event {args.event}")
    print(f"{'':14}{'median ms':>11}{'p90 ms':>10}{'min ms':>10}{'max ms':>10}"
          f"{'init ms':>10}{'peak RSS MB':>13}")
    for name in contenders:
        r = result[name]
        print(f"{name:14}{r['median_ms']:11.1f}{r['p90_ms']:10.1f}{r['min_ms']:10.1f}"
              f"{r['max_ms']:10.1f}{r['init_median_ms']:10.1f}{r['peak_rss_mb']:13.1f}")
    print("init: exec to the first `next` (median); the rest is the first invocation")
    if "ratio_median" in result:
        print(f"ratio of medians (python / rust): {result['ratio_median']:.1f}x")
    if "ratio_median_embedded" in result:
        print(f"ratio of medians (python / rust-embedded): {result['ratio_median_embedded']:.1f}x")
    if "ratio_median_standin" in result:
        print(f"ratio of medians (python-standin / rust-standin): {result['ratio_median_standin']:.1f}x")
    for name in ("rust", "rust-embedded", "rust-standin"):
        if f"floor_ratio_{name}" in result:
            print(f"ratio of medians ({name} / floor): {result[f'floor_ratio_{name}']:.2f}x")


if __name__ == "__main__":
    main()
