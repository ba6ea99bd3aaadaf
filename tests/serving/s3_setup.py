"""Run by the moto venv's Python (it has boto3): seed the S3-compatible test server.

Usage: python s3_setup.py ENDPOINT BUCKET FILE=KEY...
Creates an IAM user allowed everything, an access key for it, the bucket and the objects, and
prints the key as JSON. The server is started with INITIAL_NO_AUTH_ACTION_COUNT equal to the
number of calls made here (SETUP_CALLS + one per object), so every later request must carry a
valid AWS Signature Version 4 of that key.
"""

import json
import sys

SETUP_CALLS = 4


def main() -> None:
    import boto3  # only in the moto venv; the test imports SETUP_CALLS from this module

    endpoint, bucket, *objects = sys.argv[1:]
    kw = {"endpoint_url": endpoint, "region_name": "us-east-1",
          "aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"}
    iam = boto3.client("iam", **kw)
    iam.create_user(UserName="seaway")
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="seaway", PolicyName="all", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="seaway")["AccessKey"]
    s3 = boto3.client("s3", **kw)
    s3.create_bucket(Bucket=bucket)
    for spec in objects:
        path, _, name = spec.partition("=")
        with open(path, "rb") as fh:
            s3.put_object(Bucket=bucket, Key=name, Body=fh.read())
    print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))


if __name__ == "__main__":
    main()
