#!/usr/bin/env python3
"""AWS round trips per event, counted on the release bootstraps.

The push and delete bootstraps run as in Lambda (a fresh process per delivery, against
bench/coldstart.py's local Runtime API), with DEPLOY_MODE=apply, and reach DynamoDB and ECS in
moto through a counting proxy on 127.0.0.1 that records each request's operation
(`X-Amz-Target`). The deliveries are the round-trip budget test's (tests/e2e/budget.rs), so the
same budget (DESIGN §7) is checked on the artefact users deploy:

  push to one matched service   2 DynamoDB writes; DescribeServices + 3 ECS calls
  the same delivery again       1 DynamoDB write; no ECS call
  another tag, same digest      2 DynamoDB writes; DescribeServices + DescribeTaskDefinition
  push no rule matches          1 DynamoDB write; no ECS call
  delete by digest              2 Queries + 1 write; no ECS call

    AWS_ENDPOINT_URL=<moto> ... python3 bench/roundtrips.py --functions target/lambda --json

Prints one JSON object (--json) or a line per delivery; exits 1 when a delivery's calls differ
from its budget.
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
import coldstart  # noqa: E402  (the Runtime API harness)
import make_table  # noqa: E402

REPO = "contoso.azurecr.io/shop/api"
EVENTS = Path(__file__).resolve().parent.parent / "events"

# (name, function, body changes, expected DynamoDB calls, expected ECS calls, may be a duplicate)
DELIVERIES = [
    ("push to one matched service", "push", None,
     ["TransactWriteItems", "TransactWriteItems", "GetItem", "TransactWriteItems"],
     ["DescribeServices", "DescribeTaskDefinition", "RegisterTaskDefinition", "UpdateService"], False),
    ("the same delivery again", "push", None,
     ["TransactWriteItems"], [], True),
    ("another tag of the same digest", "push", {"id": "budget-2", "tag": "v1.4"},
     ["TransactWriteItems", "TransactWriteItems", "TransactWriteItems"],
     ["DescribeServices", "DescribeTaskDefinition"], False),
    ("push no rule matches", "push", {"id": "budget-3", "tag": "rc-1"},
     ["TransactWriteItems"], [], False),
    ("delete by digest", "delete", None,
     ["Query", "Query", "TransactWriteItems"], [], False),
]


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []

    def note(self, call: str):
        with self.lock:
            self.calls.append(call)

    def take(self):
        with self.lock:
            calls, self.calls = self.calls, []
        return calls


def proxy(upstream: str, counter: Counter) -> ThreadingHTTPServer:
    """A forwarding proxy that notes each request's `X-Amz-Target` (service.Operation)."""
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            counter.note(self.headers.get("X-Amz-Target", ""))
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            conn.request("POST", self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def ecs_service(region: str) -> tuple[str, str]:
    """A cluster and a service whose task definition runs REPO:v1.4.1 (as the budget test's)."""
    ecs = boto3.client("ecs", region_name=region)
    stamp = time.time_ns()
    cluster, service = f"bench-{stamp}", f"api-{stamp}"
    ecs.create_cluster(clusterName=cluster)
    td = ecs.register_task_definition(
        family=f"shop-api-{stamp}",
        containerDefinitions=[
            {"name": "api", "image": f"{REPO}:v1.4.1", "memory": 256, "essential": True,
             "portMappings": [{"containerPort": 8080}]},
            {"name": "proxy", "image": "public.ecr.aws/nginx/nginx:1.27", "memory": 64, "essential": False},
        ],
        cpu="256", memory="512",
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=td, desiredCount=1)
    return cluster, service


def delivery(name: str, changes) -> bytes:
    """The sample event with the body changes applied (an API Gateway v2 event, JSON body)."""
    event = json.loads((EVENTS / name).read_text())
    if changes:
        body = json.loads(event["body"])
        body["id"] = changes["id"]
        body["target"]["tag"] = changes["tag"]
        event["body"] = json.dumps(body, separators=(",", ":"))
        event["headers"]["content-length"] = str(len(event["body"].encode()))
    return json.dumps(event).encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--functions", type=Path, required=True,
                    help="cargo lambda's output: <dir>/imagehook-<function>/bootstrap")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    region = os.environ.get("AWS_REGION", "us-east-1")
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    table = make_table.create()
    cluster, service = ecs_service(region)
    counter = Counter()
    server = proxy(os.environ["AWS_ENDPOINT_URL"], counter)
    rules = [{"repository": REPO, "tags": "v*", "cluster": cluster, "service": service}]
    env = dict(os.environ, TABLE_NAME=table, AUTH_MODE="token", WEBHOOK_SECRETS="sample-webhook-token",
               DEPLOY_MODE="apply", DEPLOY_RULES=json.dumps(rules), LOG_LEVEL="warn",
               AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.server_address[1]}")
    env.pop("DEPLOY_RULES_FILE", None)

    results, over = [], 0
    for name, function, changes, want_ddb, want_ecs, duplicate in DELIVERIES:
        event = delivery("acr-delete.json" if function == "delete" else "acr-push.json", changes)
        bootstrap = args.functions / f"imagehook-{function}" / "bootstrap"
        counter.take()
        fenv = coldstart.lambda_env(env, f"imagehook-{function}")
        coldstart.run_once([str(bootstrap)], None, fenv, event, 30.0, allow_duplicate=duplicate)
        calls = counter.take()
        ddb = [c.split(".", 1)[1] for c in calls if c.startswith("DynamoDB_")]
        ecs = [c.split(".", 1)[1] for c in calls if c.startswith("AmazonEC2ContainerService")]
        other = [c for c in calls if not c.startswith(("DynamoDB_", "AmazonEC2ContainerService"))]
        ok = ddb == want_ddb and ecs == want_ecs and not other
        over += not ok
        results.append({"delivery": name, "dynamodb": ddb, "ecs": ecs, "other": other, "within_budget": ok})
    server.shutdown()

    if args.json:
        print(json.dumps({"deliveries": results, "within_budget": over == 0}))
    else:
        for r in results:
            print(f"{r['delivery']}: DynamoDB {r['dynamodb']}, ECS {r['ecs']}"
                  f"{'' if r['within_budget'] else '  OVER BUDGET'}")
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
