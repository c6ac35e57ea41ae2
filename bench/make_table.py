#!/usr/bin/env python3
"""Creates a fresh table shaped like template.yaml's and prints its name.

DynamoDB is reached through boto3's usual variables (AWS_ENDPOINT_URL for moto, AWS_REGION,
credentials), so the benchmark never writes into a table something else uses.
"""

import os
import time

import boto3


def create() -> str:
    """Creates the table; returns its name."""
    name = f"imagehook-bench-{time.time_ns()}"
    # boto3 reads only AWS_DEFAULT_REGION; the Rust SDK and the harness use AWS_REGION.
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION", "us-east-1")
    client = boto3.client("dynamodb", region_name=region)
    client.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK", "running")
        ],
        KeySchema=[
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[{
            "IndexName": "running",
            "KeySchema": [{"AttributeName": "running", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["cluster", "service"]},
        }],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    return name


def main():
    print(create())


if __name__ == "__main__":
    main()
