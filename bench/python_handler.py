"""The push function's ACR path in Python (boto3 under awslambdaric), the baseline that
bench/coldstart.py compares the Rust bootstrap with.

It does what the Rust function does before and at its first write, with the same keys:
token auth, ACR parse, digest check, one TransactWriteItems (receipt + image). It leaves out
the deploy rules and the deployment record, so the comparison flatters Python, not Rust.
"""

import base64
import hmac
import json
import os
import re
import time

import boto3

# At import time, as on Lambda: building the client is part of the cold start being measured.
DYNAMODB = boto3.client("dynamodb")
TABLE = os.environ["TABLE_NAME"]
SECRETS = [s.strip() for s in os.environ.get("WEBHOOK_SECRETS", "").split(",") if s.strip()]
RECEIPT_TTL_SECONDS = 7 * 24 * 3600  # RECEIPT_TTL_DAYS default of the Rust function
DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


def respond(status, body):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def authorised(headers):
    value = headers.get("authorization", "")
    if not value.startswith("Bearer "):
        return False
    token = value[len("Bearer "):].encode()
    # Every secret is compared, so the time taken does not tell which one nearly matched.
    matches = [hmac.compare_digest(token, s.encode()) for s in SECRETS]
    return any(matches)


def parse_acr(raw):
    body = json.loads(raw)
    target, request = body.get("target") or {}, body.get("request") or {}
    event = {
        "id": body["id"],
        "timestamp": body["timestamp"],
        "action": body["action"],
        "registry": request.get("host"),
        "repository": target.get("repository"),
        "tag": target.get("tag") or None,
        "digest": target.get("digest") or None,
    }
    if event["action"] != "push":
        raise ValueError(f"ACR action {event['action']!r} is not handled here")
    if not event["registry"] or not event["repository"]:
        raise ValueError("event without request.host or target.repository")
    if event["digest"] is None or not DIGEST.fullmatch(event["digest"]):
        raise ValueError(f"invalid digest {event['digest']!r}")
    return event


def record(event):
    """Returns "applied", or "duplicate" when the receipt already exists."""
    image = f"{event['registry']}/{event['repository']}"
    now = int(time.time())
    receipt = {
        "PK": {"S": f"EVT#acr#{event['id']}"},
        "SK": {"S": "EVT"},
        "type": {"S": "receipt"},
        "provider": {"S": "acr"},
        "event_id": {"S": event["id"]},
        "action": {"S": "push"},
        "image": {"S": f"{image}@{event['digest']}"},
        "occurred_at": {"S": event["timestamp"]},
        "received_at": {"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))},
        "expires_at": {"N": str(now + RECEIPT_TTL_SECONDS)},
        "status": {"S": "done"},
        "outcome": {"S": "applied"},
    }
    # An update, not a put, so that the image item the Rust function keeps in the same table
    # survives a Python run.
    set_image = "SET #status = :active, last_pushed_at = :at ADD push_count :one"
    values = {":active": {"S": "active"}, ":at": {"S": event["timestamp"]}, ":one": {"N": "1"}}
    if event["tag"]:
        set_image += ", tags :tag"
        values[":tag"] = {"SS": [event["tag"]]}
    try:
        DYNAMODB.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": receipt,
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": {"PK": {"S": f"IMG#{image}"}, "SK": {"S": f"D#{event['digest']}"}},
                        "UpdateExpression": set_image,
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": values,
                    }
                },
            ]
        )
    except DYNAMODB.exceptions.TransactionCanceledException as e:
        reasons = e.response.get("CancellationReasons") or []
        if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
            return "duplicate"
        raise
    return "applied"


def handler(event, context):
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if not authorised(headers):
        return respond(401, {"error": "unauthorised"})
    raw = event.get("body") or ""
    try:
        parsed = parse_acr(base64.b64decode(raw) if event.get("isBase64Encoded") else raw)
    except (ValueError, KeyError, TypeError) as e:
        return respond(400, {"error": str(e)})
    outcome = record(parsed)
    result = {k: parsed[k] for k in ("id", "registry", "repository", "tag", "digest")}
    result.update(provider="acr", action="push", outcome=outcome, deployments=[], warnings=[])
    return respond(200, {"received": 1, "events": [result]})
