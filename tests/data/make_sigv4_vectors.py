"""Produces tests/data/sigv4-vectors.json with botocore, AWS's official Python SDK core: S3
requests signed with Signature Version 4 (the Authorization header, x-amz-content-sha256) at a
frozen time, with every intermediate value botocore computes. tests/sigv4_vectors.rs checks
cosmount's signer against them byte for byte.

    python3 -m venv /tmp/boto && /tmp/boto/bin/pip install botocore
    /tmp/boto/bin/python tests/data/make_sigv4_vectors.py > tests/data/sigv4-vectors.json
"""
import datetime
import hashlib
import json
from unittest import mock

import botocore
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

NOW = datetime.datetime(2026, 11, 30, 12, 34, 56)
ACCESS = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN//////////wEaCXVzLWVhc3QtMQ=="


class Capturing(S3SigV4Auth):
    """botocore's S3 signer, keeping the intermediate strings it signed."""

    def canonical_request(self, request):
        self.captured_canonical = super().canonical_request(request)
        return self.captured_canonical

    def string_to_sign(self, request, canonical_request):
        self.captured_string_to_sign = super().string_to_sign(request, canonical_request)
        return self.captured_string_to_sign


def case(name, method, url, headers=None, body=b"", region="ap-guangzhou", token=None,
         unsigned=False):
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body)
    if unsigned:
        req.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    creds = Credentials(ACCESS, SECRET, token)
    auth = Capturing(creds, "s3", region)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW):
        auth.add_auth(req)
    canonical = auth.captured_canonical
    string_to_sign = auth.captured_string_to_sign
    signed = {k.lower(): v for k, v in req.headers.items()}
    return {
        "name": name,
        "method": method,
        "url": url,
        "region": region,
        "headers": {k.lower(): v for k, v in (headers or {}).items()},
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "unsigned_payload": unsigned,
        "session_token": token,
        "security_token_header": signed.get("x-amz-security-token"),
        "amz_date": signed["x-amz-date"],
        "content_sha256": signed["x-amz-content-sha256"],
        "canonical_request": canonical,
        "string_to_sign": string_to_sign,
        "authorization": signed["authorization"],
    }


host = "https://examplebucket-1250000000.cos.ap-guangzhou.myqcloud.com"
cases = [
    case("get object", "GET", host + "/dir/a.txt"),
    case("get object, range, key with space, unicode, parens, plus and tilde", "GET",
         host + "/dir/%E6%96%87%E4%BB%B6%20(1)%2Bx~y.txt", headers={"Range": "bytes=0-9"}),
    case("put object with metadata and content type", "PUT", host + "/up/file.bin",
         headers={"Content-Type": "application/octet-stream", "x-amz-meta-mode": "33188",
                  "x-amz-meta-mtime": "1700000000"}, body=b"hello world"),
    case("put object, unsigned payload", "PUT", host + "/up/big.bin", body=b"x" * 1000,
         unsigned=True),
    case("list objects v2 with prefix, delimiter and continuation", "GET",
         host + "/?list-type=2&prefix=dir%2F&delimiter=%2F&continuation-token=abc%3D%3D&max-keys=1000"),
    case("initiate multipart upload", "POST", host + "/big/file?uploads"),
    case("upload part", "PUT", host + "/big/file?partNumber=3&uploadId=1700000000abcdef",
         body=b"part bytes"),
    case("copy object with metadata directive", "PUT", host + "/dst/new%20name.txt",
         headers={"x-amz-copy-source": "/examplebucket-1250000000/src/old%20name.txt",
                  "x-amz-metadata-directive": "REPLACE"}),
    case("head object with a session token", "HEAD", host + "/dir/a.txt", token=TOKEN),
    case("path style, other region", "GET", "http://127.0.0.1:8333/bucket-a/k%2Fwith%25", region="us-east-1"),
    case("delete multiple", "POST", host + "/?delete", body=b"<Delete></Delete>",
         headers={"Content-MD5": "ZnJvbS1hLWZha2UtbWQ1LTEyMw=="}),
]
print(json.dumps({
    "generator": "botocore " + botocore.__version__ + ", S3SigV4Auth, time frozen at " + NOW.isoformat() + "Z",
    "access_key": ACCESS,
    "secret_key": SECRET,
    "cases": cases,
}, indent=2, ensure_ascii=False))
