#!/usr/bin/env python3
"""Where a cold start of the push bootstrap goes: exec to posted response, and each init step.

Each run execs a fresh bootstrap against a one-event Lambda Runtime API (served here) and times
exec to the posted response; with the bootstrap's log level at debug, its `init step` lines
(configuration, registry resolver, AWS SDK configuration, store, deployer, notifier) are
collected and their medians printed. The store is, by the first option that applies:

    --standin   DynamoDB answered by an instant stand-in on loopback (`{}` to every call)
    --https     DynamoDB at https://127.0.0.1:9 (refused: the trust store is still read, as
                on the first HTTPS connection in Lambda)
    (neither)   the embedded store, in a new STATE_DIR per run

    python3 bench/init_steps.py --bootstrap target/release/imagehook-push \\
        --event events/acr-push.json --runs 31 [--standin | --https] [--level info]

`--wrap 'valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p'` runs the bootstrap under
a command (the run then ends with SIGTERM, so callgrind writes its counts); `callgrind_annotate
/tmp/cg.<pid>` prints the instruction total.
"""

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler

from coldstart import Instant, serve


def run_once(cmd, env, event, gentle):
    posted = threading.Event()
    served = [False]

    class Runtime(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_GET(self):
            if served[0]:
                time.sleep(5)  # the next invocation never comes
                return
            served[0] = True
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", "req-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
            self.send_header(
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:123456789012:function:imagehook-push",
            )
            self.send_header("Content-Length", str(len(event)))
            self.end_headers()
            self.wfile.write(event)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(202)
            self.end_headers()
            posted.set()

    runtime = serve(Runtime)
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{runtime.server_address[1]}")
    with tempfile.TemporaryDirectory() as state, tempfile.TemporaryFile() as log:
        if "TABLE_NAME" not in env:
            env["STATE_DIR"] = state
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        posted.wait(60)
        took = (time.perf_counter() - start) * 1000
        (proc.terminate if gentle else proc.kill)()
        proc.wait()
        runtime.shutdown()
        log.seek(0)
        text = log.read().decode(errors="replace")
    steps = {}
    for line in text.splitlines():
        m = re.search(r'step="?([^"]+?)"?\s+micros=(\d+)', line)
        if m:
            steps[m.group(1)] = steps.get(m.group(1), 0) + int(m.group(2))
    return took, steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--event", required=True)
    ap.add_argument("--runs", type=int, default=31)
    ap.add_argument("--standin", action="store_true")
    ap.add_argument("--https", action="store_true")
    ap.add_argument("--level", default="debug", help="the bootstrap's log level")
    ap.add_argument("--apply", action="store_true",
                    help="DEPLOY_MODE=apply (the ECS client is built; the stand-in answers it too)")
    ap.add_argument("--wrap", default="", help="a command to run the bootstrap under")
    args = ap.parse_args()
    with open(args.event, "rb") as f:
        event = json.dumps(json.load(f)).encode()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "TABLE_NAME"}
    env.update({
        "AUTH_MODE": "token", "WEBHOOK_SECRETS": "sample-webhook-token", "DEPLOY_MODE": "dry-run",
        "DEPLOY_RULES_FILE": "events/deploy-rules.json", "AWS_LAMBDA_LOG_LEVEL": args.level,
        "AWS_REGION": "us-east-1", "AWS_LAMBDA_FUNCTION_NAME": "imagehook-push",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "bench", "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
    })
    creds = {"TABLE_NAME": "bench", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
             "AWS_SESSION_TOKEN": "bench"}
    if args.standin:
        standin = serve(Instant)
        env.update(creds, AWS_ENDPOINT_URL=f"http://127.0.0.1:{standin.server_address[1]}")
    elif args.https:
        env.update(creds, AWS_ENDPOINT_URL_DYNAMODB="https://127.0.0.1:9")
    if args.apply:
        env["DEPLOY_MODE"] = "apply"
    cmd = shlex.split(args.wrap) + [args.bootstrap]
    took, per_step = [], {}
    for _ in range(args.runs):
        t, steps = run_once(cmd, env, event, gentle=bool(args.wrap))
        took.append(t)
        for k, v in steps.items():
            per_step.setdefault(k, []).append(v)
    print(f"exec to posted response, median of {args.runs}: {statistics.median(took):.2f} ms")
    for k, v in per_step.items():
        print(f"  init step {k}: median {statistics.median(v) / 1000:.3f} ms")


if __name__ == "__main__":
    main()
