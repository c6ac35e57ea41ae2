"""Seeds for the fuzz targets from the sample API Gateway events (`scripts/fuzz seed`).

Usage: python3 fuzz/seed.py <events dir> <corpus dir>

Each event's webhook body is its `body` field (base64-decoded when `isBase64Encoded`), its
headers are `headers` / `multiValueHeaders`, and `?registry=` / `?region=` are in
`queryStringParameters`. Files are named by the SHA-1 of their content, as libFuzzer names them,
so seeding twice adds nothing. Run `scripts/fuzz cmin` afterwards.
"""

import base64
import hashlib
import json
import pathlib
import re
import sys

# Provider::ALL has 12 senders; selector 12 leaves the choice to detection.
PROVIDER_SELECTORS = range(13)
# The auth target's verifier setups (fuzz_targets/auth.rs: SETUPS).
AUTH_SELECTORS = range(8)
DIGEST = "sha256:" + "0123456789abcdef" * 4
# The grammar's edges, beside the references found in the events.
REFERENCES = [
    "nginx",
    "nginx:1.27",
    "library/nginx:latest",
    "docker.io/nginx",
    "bitnami/redis",
    "localhost/app",
    "localhost:5000/app:1",
    "registry.local:5000/team/app:2",
    "10.0.0.1:443/a/b",
    "MyReg.AzureCR.io/shop/api:v1.4.2",
    f"myregistry.azurecr.io/shop/api:v1.4.2@{DIGEST}",
    f"ghcr.io/org/app@{DIGEST}",
    "a.b/c__d/e---f/g.h:_tag-1.2",
    "example.com/Shop/api:1",
    DIGEST,
]


def write(folder, data):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def frame(selector, headers, url, body):
    """The framing of fuzz/src/lib.rs: selector byte, header lines, blank line, body."""
    lines = [f":{k}: {v}" for k, v in url.items()]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    head = "".join(line + "\n" for line in lines).encode()
    # The blank line ends the head even when it is empty.
    return bytes([selector]) + (head or b"\n") + b"\n" + body


def references(value, found):
    """Strings in a body that look like image references or their parts."""
    if isinstance(value, dict):
        for v in value.values():
            references(v, found)
    elif isinstance(value, list):
        for v in value:
            references(v, found)
    elif (
        isinstance(value, str)
        and len(value) <= 300
        and ("/" in value or "sha256:" in value)
        and "://" not in value
        and re.fullmatch(r"[\w.:/@-]+", value)
    ):
        found.add(value)


def main(events_dir, corpus_dir):
    events_dir, corpus = pathlib.Path(events_dir), pathlib.Path(corpus_dir)
    counts = {}
    refs = set(REFERENCES)

    def add(target, data):
        write(corpus / target, data)
        counts[target] = counts.get(target, 0) + 1

    for path in sorted(events_dir.glob("*.json")):
        event = json.loads(path.read_text())
        if not isinstance(event, dict):
            continue
        if event.get("source") == "aws.ecs":
            # An EventBridge event for the outcomes function: the file is the body.
            add("outcomes", path.read_bytes())
            continue
        body = event.get("body")
        if not isinstance(body, str):
            continue
        body = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        for k, vs in (event.get("multiValueHeaders") or {}).items():
            if vs:
                headers.setdefault(k.lower(), vs[-1])
        query = event.get("queryStringParameters") or {}
        url = {k: query[k] for k in ("registry", "region") if k in query}

        add("detect", body)
        for s in PROVIDER_SELECTORS:
            add("providers", frame(s, headers, url, body))
        for s in AUTH_SELECTORS:
            add("auth", frame(s, headers, {}, body))
        try:
            references(json.loads(body), refs)
        except ValueError:
            pass

    for r in sorted(refs):
        add("reference", r.encode())
    for target, n in sorted(counts.items()):
        print(f"{target}: {n} seeds")


if __name__ == "__main__":
    main(*sys.argv[1:])
