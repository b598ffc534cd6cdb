"""A small command-line wrapper over Tencent's official COS SDK, used by the Rust FUSE tests to
write objects the way other COS clients do and to check what cosmount stored.

Environment: SDK_PORT (emulator port, reached as a proxy so requests carry real COS host names),
SDK_SECRET_ID, SDK_SECRET_KEY, SDK_BUCKET, optional SDK_TOKEN. Every command takes
--bucket B (instead of SDK_BUCKET) and --region R (default ap-guangzhou): the SDK reaches a
bucket at its region's host name, as it reaches COS.

  sdk_tool.py put KEY FILE [--meta name=value ...] [--storage-class C] [--sse-c-key-b64 K]
  sdk_tool.py md5 KEY [--sse-c-key-b64 K]        prints the md5 of the object's bytes
  sdk_tool.py get KEY [--sse-c-key-b64 K]        writes the object's bytes to stdout
  sdk_tool.py head KEY [--sse-c-key-b64 K]       prints the response headers as JSON
  sdk_tool.py buckets                            prints GET Service's buckets as JSON
                                                 [{"name", "region", "created"}, ...]
  sdk_tool.py create-bucket NAME                 PUT Bucket, in --region
  sdk_tool.py delete-bucket NAME                 DELETE Bucket (--region: the bucket's)
Errors: exit status 3 and a JSON object {"status": ..., "code": ...} on stdout.
"""
import argparse
import base64
import hashlib
import json
import os
import sys

from qcloud_cos import CosConfig, CosS3Client
from qcloud_cos.cos_exception import CosServiceError


def client(region):
    cfg = CosConfig(
        Region=region,
        SecretId=os.environ["SDK_SECRET_ID"],
        SecretKey=os.environ["SDK_SECRET_KEY"],
        Token=os.environ.get("SDK_TOKEN"),
        Scheme="http",
        Proxies={"http": "http://127.0.0.1:%s" % os.environ["SDK_PORT"]},
    )
    return CosS3Client(cfg, retry=1)


def sse_c(args):
    if not args.sse_c_key_b64:
        return {}
    raw = base64.b64decode(args.sse_c_key_b64)
    return {
        "SSECustomerAlgorithm": "AES256",
        "SSECustomerKey": args.sse_c_key_b64,
        "SSECustomerKeyMD5": base64.b64encode(hashlib.md5(raw).digest()).decode(),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument(
        "cmd", choices=["put", "md5", "get", "head", "buckets", "create-bucket", "delete-bucket"]
    )
    p.add_argument("key", nargs="?")
    p.add_argument("file", nargs="?")
    p.add_argument("--meta", action="append", default=[])
    p.add_argument("--sse-c-key-b64")
    p.add_argument("--storage-class")
    p.add_argument("--bucket", default=os.environ.get("SDK_BUCKET"))
    p.add_argument("--region", default="ap-guangzhou")
    args = p.parse_args()
    c = client(args.region)
    bucket = args.bucket
    try:
        if args.cmd == "buckets":
            r = c.list_buckets()
            found = (r.get("Buckets") or {}).get("Bucket") or []
            print(
                json.dumps(
                    [
                        {"name": b["Name"], "region": b["Location"], "created": b["CreationDate"]}
                        for b in found
                    ]
                )
            )
        elif args.cmd == "create-bucket":
            c.create_bucket(Bucket=args.key)
        elif args.cmd == "delete-bucket":
            c.delete_bucket(Bucket=args.key)
        elif args.cmd == "put":
            meta = {}
            for m in args.meta:
                k, v = m.split("=", 1)
                meta["x-cos-meta-" + k] = v
            with open(args.file, "rb") as f:
                body = f.read()
            extra = sse_c(args)
            if args.storage_class:
                extra["StorageClass"] = args.storage_class
            c.put_object(Bucket=bucket, Key=args.key, Body=body, Metadata=meta, **extra)
        elif args.cmd == "md5":
            r = c.get_object(Bucket=bucket, Key=args.key, **sse_c(args))
            stream = r["Body"].get_raw_stream()
            h = hashlib.md5()
            while True:
                chunk = stream.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
            print(h.hexdigest())
        elif args.cmd == "get":
            r = c.get_object(Bucket=bucket, Key=args.key, **sse_c(args))
            stream = r["Body"].get_raw_stream()
            out = sys.stdout.buffer
            while True:
                chunk = stream.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
            out.flush()
        elif args.cmd == "head":
            r = c.head_object(Bucket=bucket, Key=args.key, **sse_c(args))
            print(json.dumps({k.lower(): v for k, v in r.items()}))
    except CosServiceError as e:
        print(json.dumps({"status": e.get_status_code(), "code": e.get_error_code()}))
        sys.exit(3)


if __name__ == "__main__":
    main()
