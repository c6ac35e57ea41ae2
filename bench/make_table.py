#!/usr/bin/env python3
"""Creates a fresh table shaped like template.yaml's ImageTable and prints its name.

The keys, attribute definitions, indexes and billing mode are read from template.yaml itself, so
a benchmark or a local run never tests against a table the stack would not create. DynamoDB is
reached through boto3's usual variables (AWS_ENDPOINT_URL for moto, AWS_REGION, credentials).

Usage: make_table.py [NAME]. Without NAME the table gets a unique name, so the benchmark never
writes into a table something else uses.
"""

import os
import sys
import time
from pathlib import Path

import boto3
import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
# What CreateTable takes from the resource's properties; the rest (TTL, PITR, SSE) are separate
# calls that change nothing a local run observes.
SHAPE = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !GetAtt, ...) as plain values."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def table_shape() -> dict:
    template = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_Loader)
    props = template["Resources"]["ImageTable"]["Properties"]
    return {k: props[k] for k in SHAPE if k in props}


def create(name: str | None = None) -> str:
    """Creates the table; returns its name."""
    name = name or f"imagehook-bench-{time.time_ns()}"
    # boto3 reads only AWS_DEFAULT_REGION; the Rust SDK and the harness use AWS_REGION.
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION", "us-east-1")
    client = boto3.client("dynamodb", region_name=region)
    client.create_table(TableName=name, **table_shape())
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    return name


def main():
    print(create(sys.argv[1] if len(sys.argv) > 1 else None))


if __name__ == "__main__":
    main()
