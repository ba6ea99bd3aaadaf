"""Run by the moto venv's Python (it has boto3): download every object beneath a prefix.

Usage: python s3_fetch.py ENDPOINT KEY_ID SECRET BUCKET PREFIX DEST
The scorer's output is read back with boto3, not with the scorer's own S3 client.
"""

import os
import sys


def main() -> None:
    import boto3

    endpoint, key_id, secret, bucket, prefix, dest = sys.argv[1:]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=key_id, aws_secret_access_key=secret)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            target = os.path.join(dest, obj["Key"][len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            s3.download_file(bucket, obj["Key"], target)
            print(obj["Key"])


if __name__ == "__main__":
    main()
