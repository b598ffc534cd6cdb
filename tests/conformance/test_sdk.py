# -*- coding: utf-8 -*-
"""Official-SDK conformance suite for cos-emulator.

Runs Tencent's own, unmodified Python SDK (cos-python-sdk-v5, pinned by scripts/sdk-venv.sh)
against the emulator exactly as it would talk to real COS: `Scheme='http'` plus an HTTP proxy
pointing at the emulator, so every request goes out in absolute form with the real
`<bucket>.cos.<region>.myqcloud.com` / `service.cos.myqcloud.com` host names and the emulator
routes by Host. Started by scripts/conformance.sh, which passes the ports and credentials of
three emulators through CONFORMANCE_* environment variables:

- main:   plain credentials, buckets CONFORMANCE_BUCKET and CONFORMANCE_BUCKET2 (in
          CONFORMANCE_REGION) and CONFORMANCE_FAR_BUCKET (in CONFORMANCE_FAR_REGION);
- sts:    the same, but every request must carry x-cos-security-token CONFORMANCE_TOKEN;
- faults: `complete:error200:x1,copy:error200:x1,put:503:x2` (FaultInjectionTests only).

Expected behaviour comes from /work/shared/cos-protocol.md (section numbers below refer to it).
"""

import base64
import hashlib
import json
import os
import tempfile
import unittest
import uuid
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import crcmod
import requests
from qcloud_cos import CosConfig, CosS3Client
from qcloud_cos.cos_exception import CosClientError, CosServiceError

PORT = int(os.environ["CONFORMANCE_PORT"])
STS_PORT = int(os.environ["CONFORMANCE_STS_PORT"])
FAULT_PORT = int(os.environ["CONFORMANCE_FAULT_PORT"])
SECRET_ID = os.environ["CONFORMANCE_SECRET_ID"]
SECRET_KEY = os.environ["CONFORMANCE_SECRET_KEY"]
TOKEN = os.environ["CONFORMANCE_TOKEN"]
BUCKET = os.environ["CONFORMANCE_BUCKET"]
BUCKET2 = os.environ["CONFORMANCE_BUCKET2"]
REGION = os.environ["CONFORMANCE_REGION"]
FAR_BUCKET = os.environ["CONFORMANCE_FAR_BUCKET"]
FAR_REGION = os.environ["CONFORMANCE_FAR_REGION"]
WORK = os.environ.get("CONFORMANCE_TMP") or tempfile.mkdtemp(prefix="conformance-")

MIB = 1024 * 1024

# CRC-64/XZ exactly as the SDK computes it (§4 "CRC64").
crc64 = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, xorOut=0xFFFFFFFFFFFFFFFF, rev=True)


def proxies(port):
    return {"http": "http://127.0.0.1:%d" % port}


def make_client(
    port=PORT, secret_id=SECRET_ID, secret_key=SECRET_KEY, token=None, retry=0, region=REGION,
    **extra
):
    """A client that reaches the emulator as real COS: real host names, through a proxy."""
    cfg = CosConfig(
        Region=region,
        SecretId=secret_id,
        SecretKey=secret_key,
        Token=token,
        Scheme="http",
        Proxies=proxies(port),
        **extra
    )
    return CosS3Client(cfg, retry=retry)


def data(n, seed):
    """n deterministic pseudo-random bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(("%s:%d" % (seed, counter)).encode()).digest()
        counter += 1
    return bytes(out[:n])


def md5_hex(b):
    return hashlib.md5(b).hexdigest()


def read_body(resp):
    return b"".join(resp["Body"].get_stream(256 * 1024))


def sse_c(raw_key):
    """SSE-C request parameters for a 32-byte raw key (§6)."""
    return {
        "SSECustomerAlgorithm": "AES256",
        "SSECustomerKey": base64.b64encode(raw_key).decode(),
        "SSECustomerKeyMD5": base64.b64encode(hashlib.md5(raw_key).digest()).decode(),
    }


def copy_source_sse_c(raw_key):
    p = sse_c(raw_key)
    return {"CopySource" + k: v for k, v in p.items()}


class Base(unittest.TestCase):
    port = PORT

    @classmethod
    def setUpClass(cls):
        cls.cos = make_client(cls.port)

    def setUp(self):
        self.prefix = "conformance/%s/%s/" % (self._testMethodName, uuid.uuid4().hex[:8])

    def key(self, name):
        return self.prefix + name

    def expect_error(self, fn, status, code=None):
        with self.assertRaises(CosServiceError) as cm:
            fn()
        e = cm.exception
        self.assertEqual(e.get_status_code(), status, "unexpected status for %s" % e)
        if code is not None:
            self.assertEqual(e.get_error_code(), code, "unexpected code for %s" % e)
        return e

    def assert_missing(self, key, bucket=BUCKET, cos=None):
        cos = cos or self.cos
        self.expect_error(lambda: cos.head_object(Bucket=bucket, Key=key), 404)
        self.expect_error(lambda: cos.get_object(Bucket=bucket, Key=key), 404, "NoSuchKey")

    def list_all(self, prefix, delimiter="", max_keys=1000, encoding_type="", cos=None, bucket=BUCKET):
        """Follows NextMarker until IsTruncated is false; returns (keys, prefixes, pages)."""
        cos = cos or self.cos
        keys, prefixes, pages = [], [], 0
        marker = ""
        while True:
            r = cos.list_objects(
                Bucket=bucket,
                Prefix=prefix,
                Delimiter=delimiter,
                Marker=marker,
                MaxKeys=max_keys,
                EncodingType=encoding_type,
            )
            pages += 1
            self.assertLessEqual(pages, 100, "listing does not terminate")
            page_keys = [c["Key"] for c in r.get("Contents", [])]
            page_prefixes = [c["Prefix"] for c in r.get("CommonPrefixes", [])]
            self.assertLessEqual(len(page_keys) + len(page_prefixes), max_keys)
            keys += page_keys
            prefixes += page_prefixes
            self.assertIn(r["IsTruncated"], ("true", "false"))
            if r["IsTruncated"] == "false":
                self.assertNotIn("NextMarker", r, "NextMarker only when truncated (§3.7)")
                return keys, prefixes, pages
            self.assertTrue(r.get("NextMarker"), "a truncated page must carry NextMarker")
            marker = r["NextMarker"]
            if encoding_type == "url":
                marker = unquote(marker)


# ---------------------------------------------------------------------------------------------
# Objects


class ObjectTests(Base):
    def test_put_get_head_delete(self):
        key = self.key("hello.bin")
        body = data(100 * 1024 + 7, "hello")
        put = self.cos.put_object(
            Bucket=BUCKET,
            Key=key,
            Body=body,
            ContentType="text/plain",
            CacheControl="max-age=60",
            ContentDisposition='attachment; filename="hello.bin"',
            Metadata={"x-cos-meta-author": "alice", "x-cos-meta-note": "a b/c"},
        )
        # The SDK returns headers as a plain dict: names must be spelled as COS spells them
        # (`ETag`, `Content-Length`, `x-cos-hash-crc64ecma`), not just match case-insensitively.
        self.assertEqual(put["ETag"], '"%s"' % md5_hex(body))
        self.assertEqual(put["x-cos-hash-crc64ecma"], str(crc64(body)))
        self.assertTrue(put.get("x-cos-request-id"))

        got = self.cos.get_object(Bucket=BUCKET, Key=key)
        self.assertEqual(read_body(got), body)
        self.assertEqual(got["ETag"], put["ETag"])
        self.assertEqual(got["Content-Length"], str(len(body)))
        self.assertEqual(got["Content-Type"], "text/plain")
        self.assertEqual(got["x-cos-meta-author"], "alice")
        self.assertEqual(got["x-cos-hash-crc64ecma"], str(crc64(body)))

        head = self.cos.head_object(Bucket=BUCKET, Key=key)
        self.assertEqual(head["ETag"], '"%s"' % md5_hex(body))
        self.assertEqual(head["Content-Length"], str(len(body)))
        self.assertEqual(head["Content-Type"], "text/plain")
        self.assertEqual(head["Cache-Control"], "max-age=60")
        self.assertEqual(head["Content-Disposition"], 'attachment; filename="hello.bin"')
        self.assertEqual(head["x-cos-meta-author"], "alice")
        self.assertEqual(head["x-cos-meta-note"], "a b/c")
        self.assertEqual(head["x-cos-hash-crc64ecma"], str(crc64(body)))
        self.assertNotIn("x-cos-storage-class", head, "STANDARD is not announced (§3.1)")
        self.assertTrue(head.get("Last-Modified", "").endswith(" GMT"))
        self.assertEqual(head.get("Server"), "tencent-cos")

        self.cos.delete_object(Bucket=BUCKET, Key=key)
        self.assert_missing(key)
        # Deleting a missing key again is not an error for the SDK.
        self.cos.delete_object(Bucket=BUCKET, Key=key)

    def test_get_range(self):
        key = self.key("range.bin")
        body = data(10000, "range")
        self.cos.put_object(Bucket=BUCKET, Key=key, Body=body)
        whole_crc = str(crc64(body))

        r = self.cos.get_object(Bucket=BUCKET, Key=key, Range="bytes=100-199")
        self.assertEqual(read_body(r), body[100:200])
        self.assertEqual(r["Content-Length"], "100")
        self.assertEqual(r["Content-Range"], "bytes 100-199/10000")
        # ETag and CRC of a 206 are those of the whole object (§3.2).
        self.assertEqual(r["ETag"], '"%s"' % md5_hex(body))
        self.assertEqual(r["x-cos-hash-crc64ecma"], whole_crc)

        r = self.cos.get_object(Bucket=BUCKET, Key=key, Range="bytes=9990-")
        self.assertEqual(read_body(r), body[9990:])
        self.assertEqual(r["Content-Range"], "bytes 9990-9999/10000")

        r = self.cos.get_object(Bucket=BUCKET, Key=key, Range="bytes=0-0")
        self.assertEqual(read_body(r), body[:1])

        self.expect_error(
            lambda: self.cos.get_object(Bucket=BUCKET, Key=key, Range="bytes=10000-10010"),
            416,
            "InvalidRange",
        )

    def test_delete_objects_quiet_and_verbose(self):
        keys = [self.key("d/%d.txt" % i) for i in range(6)]
        for k in keys:
            self.cos.put_object(Bucket=BUCKET, Key=k, Body=k.encode())

        quiet = self.cos.delete_objects(
            Bucket=BUCKET,
            Delete={"Quiet": "true", "Object": [{"Key": k} for k in keys[:3]]},
        )
        self.assertFalse(quiet.get("Deleted"), "Quiet mode reports only errors (§3.5)")
        self.assertFalse(quiet.get("Error"))

        verbose = self.cos.delete_objects(
            Bucket=BUCKET,
            Delete={"Quiet": "false", "Object": [{"Key": k} for k in keys[3:]]},
        )
        self.assertFalse(verbose.get("Error"))
        self.assertEqual(sorted(d["Key"] for d in verbose["Deleted"]), sorted(keys[3:]))

        for k in keys:
            self.assert_missing(k)
        remaining, _, _ = self.list_all(self.prefix)
        self.assertEqual(remaining, [])

    def test_special_keys(self):
        names = [
            "中文/文件 (1).txt",
            "with space/a b c.txt",
            "plus+sign/a+b+c.txt",
            "paren(s)/x(1)(2).txt",
            "tilde~/~home~.txt",
            "deep/a/b/c/d/e/f.txt",
            "mixed/ü ñ + (x) ~ y.txt",
            "percent%2F/literal%20.txt",
        ]
        keys = [self.key(n) for n in names]
        for k in keys:
            self.cos.put_object(Bucket=BUCKET, Key=k, Body=("body of " + k).encode("utf-8"))
        for k in keys:
            got = self.cos.get_object(Bucket=BUCKET, Key=k)
            self.assertEqual(read_body(got), ("body of " + k).encode("utf-8"), k)
            head = self.cos.head_object(Bucket=BUCKET, Key=k)
            self.assertEqual(head["Content-Length"], str(len(("body of " + k).encode("utf-8"))))

        listed, _, _ = self.list_all(self.prefix)
        self.assertEqual(sorted(listed), sorted(keys))
        self.assertEqual(listed, sorted(listed, key=lambda s: s.encode("utf-8")), "UTF-8 byte order")

        # Delimited listing at the top of the prefix: every name's first segment.
        _, prefixes, _ = self.list_all(self.prefix, delimiter="/")
        self.assertEqual(sorted(prefixes), sorted({self.prefix + n.split("/")[0] + "/" for n in names}))

        # A prefix containing the special characters themselves.
        sub, _, _ = self.list_all(self.prefix + "plus+sign/")
        self.assertEqual(sub, [self.key("plus+sign/a+b+c.txt")])
        sub, _, _ = self.list_all(self.prefix + "with space/")
        self.assertEqual(sub, [self.key("with space/a b c.txt")])

        for k in keys:
            self.cos.delete_object(Bucket=BUCKET, Key=k)
            self.assert_missing(k)
        listed, _, _ = self.list_all(self.prefix)
        self.assertEqual(listed, [])


# ---------------------------------------------------------------------------------------------
# Listings


class ListTests(Base):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = "conformance/list/%s/" % uuid.uuid4().hex[:8]
        names = []
        for d in range(4):
            for f in range(4):
                names.append("dir%d/file%d.txt" % (d, f))
        names += ["dir1/sub/x.txt", "dir1/sub/y.txt", "dir3/deeper/a/b.txt"]
        names += ["top%d.txt" % i for i in range(6)]
        cls.names = names
        cls.keys = [cls.root + n for n in names]
        assert len(cls.keys) == 25
        for k in cls.keys:
            cls.cos.put_object(Bucket=BUCKET, Key=k, Body=k.encode())

    def test_pagination_with_delimiter(self):
        keys, prefixes, pages = self.list_all(self.root, delimiter="/", max_keys=7)
        expected_keys = sorted(self.root + n for n in self.names if "/" not in n)
        expected_prefixes = sorted({self.root + n.split("/")[0] + "/" for n in self.names if "/" in n})
        self.assertEqual(len(keys), len(set(keys)), "duplicate keys across pages")
        self.assertEqual(len(prefixes), len(set(prefixes)), "duplicate prefixes across pages")
        self.assertEqual(sorted(keys), expected_keys)
        self.assertEqual(sorted(prefixes), expected_prefixes)
        self.assertEqual(pages, 2)  # 4 prefixes + 6 keys = 10 entries, 7 per page

        # One level down, with a nested common prefix and files.
        keys, prefixes, _ = self.list_all(self.root + "dir1/", delimiter="/", max_keys=2)
        self.assertEqual(sorted(keys), sorted(self.root + "dir1/file%d.txt" % i for i in range(4)))
        self.assertEqual(prefixes, [self.root + "dir1/sub/"])

    def test_pagination_without_delimiter(self):
        keys, prefixes, pages = self.list_all(self.root, max_keys=7)
        self.assertEqual(prefixes, [])
        self.assertEqual(len(keys), len(set(keys)), "duplicate keys across pages")
        self.assertEqual(keys, sorted(self.keys))
        self.assertEqual(pages, 4)  # 25 keys, 7 per page

    def test_max_keys_page_shape(self):
        r = self.cos.list_objects(Bucket=BUCKET, Prefix=self.root, Delimiter="/", MaxKeys=3)
        self.assertEqual(r["IsTruncated"], "true")
        self.assertEqual(r["MaxKeys"], "3")
        self.assertEqual(r["Name"], BUCKET)
        self.assertEqual(r["Prefix"], self.root)
        self.assertEqual(r["Delimiter"], "/")
        entries = [c["Prefix"] for c in r.get("CommonPrefixes", [])] + [c["Key"] for c in r.get("Contents", [])]
        self.assertEqual(len(entries), 3)
        self.assertEqual(r["NextMarker"], max(entries))
        for c in r.get("Contents", []):
            self.assertRegex(c["LastModified"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertEqual(c["ETag"], '"%s"' % md5_hex(c["Key"].encode()))
            self.assertEqual(c["Size"], str(len(c["Key"].encode())))
            self.assertEqual(c["StorageClass"], "STANDARD")

    def test_encoding_type_url(self):
        root = "conformance/list-enc/%s/" % uuid.uuid4().hex[:8]
        names = ["a b/c+d.txt", "中文/文件.txt", "x&y=z/%41.txt", "t~(1)/q'!*.txt", "plain.txt"]
        keys = [root + n for n in names]
        for k in keys:
            self.cos.put_object(Bucket=BUCKET, Key=k, Body=b"x")

        r = self.cos.list_objects(Bucket=BUCKET, Prefix=root, EncodingType="url")
        self.assertEqual(r["EncodingType"], "url")
        raw = [c["Key"] for c in r["Contents"]]
        for k in raw:
            self.assertNotIn(" ", k)
            self.assertNotIn("+", k, "a real '+' must be sent as %2B, a space as %20 (§3.7)")
        self.assertEqual(sorted(unquote(k) for k in raw), sorted(keys))
        self.assertIn(root.replace(" ", "%20") + "a%20b/c%2Bd.txt", raw)
        self.assertEqual(unquote(r["Prefix"]), root)

        keys_p, prefixes, pages = self.list_all(root, delimiter="/", max_keys=2, encoding_type="url")
        self.assertEqual([unquote(k) for k in keys_p], [root + "plain.txt"])
        self.assertEqual(
            sorted(unquote(p) for p in prefixes),
            sorted(root + n.split("/")[0] + "/" for n in names if "/" in n),
        )
        self.assertGreaterEqual(pages, 3)

        # Without EncodingType the SDK asks for url encoding itself and decodes the result.
        decoded, _, _ = self.list_all(root)
        self.assertEqual(sorted(decoded), sorted(keys))


# ---------------------------------------------------------------------------------------------
# Buckets


class BucketTests(Base):
    def test_list_buckets(self):
        r = self.cos.list_buckets()
        regions = {b["Name"]: b["Location"] for b in r["Buckets"]["Bucket"]}
        self.assertEqual(regions.get(BUCKET), REGION)
        self.assertEqual(regions.get(BUCKET2), REGION)
        self.assertEqual(regions.get(FAR_BUCKET), FAR_REGION)
        for b in r["Buckets"]["Bucket"]:
            # ISO 8601 in seconds, as COS writes it (§3.9).
            self.assertRegex(b["CreationDate"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertTrue(r["Owner"]["ID"])

    def test_list_buckets_of_one_region(self):
        # The SDK's Region filter, and GET Service at a region's own host (§3.9).
        r = self.cos.list_buckets(Region=FAR_REGION)
        self.assertEqual([b["Name"] for b in r["Buckets"]["Bucket"]], [FAR_BUCKET])
        regional = make_client(ServiceDomain="cos.%s.myqcloud.com" % FAR_REGION)
        r = regional.list_buckets()
        self.assertEqual([b["Name"] for b in r["Buckets"]["Bucket"]], [FAR_BUCKET])

    def test_a_bucket_answers_at_its_own_region_only(self):
        far = make_client(region=FAR_REGION)
        r = far.head_bucket(Bucket=FAR_BUCKET)
        self.assertEqual(r.get("x-cos-bucket-region"), FAR_REGION)
        key = self.key("far.txt")
        far.put_object(Bucket=FAR_BUCKET, Key=key, Body=b"far away")
        self.assertEqual(read_body(far.get_object(Bucket=FAR_BUCKET, Key=key)), b"far away")
        # Reached at another region's endpoint, COS says NoSuchBucket (users' reports).
        self.expect_error(lambda: self.cos.head_bucket(Bucket=FAR_BUCKET), 404)
        self.expect_error(
            lambda: self.cos.get_object(Bucket=FAR_BUCKET, Key=key), 404, "NoSuchBucket"
        )
        far.delete_object(Bucket=FAR_BUCKET, Key=key)

    def test_head_bucket(self):
        for b in (BUCKET, BUCKET2):
            r = self.cos.head_bucket(Bucket=b)
            self.assertEqual(r.get("x-cos-bucket-region"), REGION)
            self.assertTrue(r.get("x-cos-request-id"))
        self.assertTrue(self.cos.bucket_exists(Bucket=BUCKET))

    def test_missing_bucket(self):
        missing = "nosuchbucket-1250000000"
        self.expect_error(lambda: self.cos.head_bucket(Bucket=missing), 404)
        self.assertFalse(self.cos.bucket_exists(Bucket=missing))
        self.expect_error(lambda: self.cos.list_objects(Bucket=missing), 404, "NoSuchBucket")
        self.expect_error(
            lambda: self.cos.get_object(Bucket=missing, Key="x.txt"), 404, "NoSuchBucket"
        )


class BucketLifecycleTests(Base):
    """PUT Bucket and DELETE Bucket, as COS's API documentation of each has them: every bucket
    made here is deleted again."""

    REGION_NEW = "ap-chengdu"

    def name(self, what):
        return "%s-%s-1250000000" % (what, uuid.uuid4().hex[:8])

    def test_create_use_and_delete_a_bucket(self):
        name = self.name("made")
        cos = make_client(region=self.REGION_NEW)
        cos.create_bucket(Bucket=name)
        try:
            r = cos.head_bucket(Bucket=name)
            self.assertEqual(r.get("x-cos-bucket-region"), self.REGION_NEW)
            listed = {b["Name"]: b["Location"] for b in cos.list_buckets()["Buckets"]["Bucket"]}
            self.assertEqual(listed.get(name), self.REGION_NEW)
            cos.put_object(Bucket=name, Key="k", Body=b"in a new bucket")
            self.assertEqual(read_body(cos.get_object(Bucket=name, Key="k")), b"in a new bucket")
            self.expect_error(lambda: cos.delete_bucket(Bucket=name), 409, "BucketNotEmpty")
            cos.delete_object(Bucket=name, Key="k")
            # An incomplete multipart upload keeps it from being deleted too.
            upload = cos.create_multipart_upload(Bucket=name, Key="mp")["UploadId"]
            self.expect_error(lambda: cos.delete_bucket(Bucket=name), 409, "BucketNotEmpty")
            cos.abort_multipart_upload(Bucket=name, Key="mp", UploadId=upload)
        finally:
            cos.delete_bucket(Bucket=name)
        self.expect_error(lambda: cos.head_bucket(Bucket=name), 404)
        self.expect_error(lambda: cos.delete_bucket(Bucket=name), 404, "NoSuchBucket")
        names = [b["Name"] for b in cos.list_buckets()["Buckets"]["Bucket"]]
        self.assertNotIn(name, names)

    def test_create_an_existing_bucket(self):
        # Every bucket of the emulator is the one account's own (PUT Bucket's error table).
        self.expect_error(
            lambda: self.cos.create_bucket(Bucket=BUCKET), 409, "BucketAlreadyOwnedByYou"
        )
        far = make_client(region=FAR_REGION)
        self.expect_error(
            lambda: self.cos.create_bucket(Bucket=FAR_BUCKET), 409, "BucketAlreadyOwnedByYou"
        )
        self.assertEqual(far.head_bucket(Bucket=FAR_BUCKET).get("x-cos-bucket-region"), FAR_REGION)

    def test_invalid_bucket_names(self):
        cos = make_client(region=self.REGION_NEW)
        for name in ["no-appid", "trailing--1250000000"]:
            with self.subTest(name):
                self.expect_error(lambda: cos.create_bucket(Bucket=name), 400, "InvalidBucketName")
        # The bucket's host may be 60 characters at most.
        longest = "x23456789012345678901-1250000000"
        self.assertEqual(len("%s.cos.%s.myqcloud.com" % (longest, self.REGION_NEW)), 60)
        self.expect_error(
            lambda: cos.create_bucket(Bucket="y" + longest), 400, "BucketNameTooLong"
        )
        cos.create_bucket(Bucket=longest)
        cos.delete_bucket(Bucket=longest)


# ---------------------------------------------------------------------------------------------
# Copy


class CopyTests(Base):
    def put_source(self, key, bucket=BUCKET):
        body = data(4096, key)
        self.cos.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="text/x-source",
            Metadata={"x-cos-meta-origin": "source", "x-cos-meta-keep": "yes"},
        )
        return body

    def check_copy_result(self, r, body):
        self.assertEqual(r["ETag"], '"%s"' % md5_hex(body))
        self.assertTrue(r.get("LastModified"))

    def test_copy_within_bucket(self):
        src = self.key("src (1).txt")
        body = self.put_source(src)

        dst = self.key("dst/copy.txt")
        r = self.cos.copy_object(
            Bucket=BUCKET, Key=dst, CopySource={"Bucket": BUCKET, "Key": src, "Region": REGION}
        )
        self.check_copy_result(r, body)
        head = self.cos.head_object(Bucket=BUCKET, Key=dst)
        self.assertEqual(head["x-cos-meta-origin"], "source")
        self.assertEqual(head["x-cos-meta-keep"], "yes")
        self.assertEqual(head["Content-Type"], "text/x-source")
        self.assertEqual(head["x-cos-hash-crc64ecma"], str(crc64(body)))
        self.assertEqual(read_body(self.cos.get_object(Bucket=BUCKET, Key=dst)), body)

        dst2 = self.key("dst/replaced.txt")
        r = self.cos.copy_object(
            Bucket=BUCKET,
            Key=dst2,
            CopySource={"Bucket": BUCKET, "Key": src, "Region": REGION},
            CopyStatus="Replaced",
            ContentType="application/x-new",
            Metadata={"x-cos-meta-origin": "replaced"},
        )
        self.check_copy_result(r, body)
        head = self.cos.head_object(Bucket=BUCKET, Key=dst2)
        self.assertEqual(head["x-cos-meta-origin"], "replaced")
        self.assertNotIn("x-cos-meta-keep", head, "Replaced drops the old metadata")
        self.assertEqual(head["Content-Type"], "application/x-new")
        self.assertEqual(read_body(self.cos.get_object(Bucket=BUCKET, Key=dst2)), body)

        # The source is untouched.
        head = self.cos.head_object(Bucket=BUCKET, Key=src)
        self.assertEqual(head["x-cos-meta-origin"], "source")

        # Metadata update in place: source == destination requires Replaced (§3.6).
        self.cos.copy_object(
            Bucket=BUCKET,
            Key=src,
            CopySource={"Bucket": BUCKET, "Key": src, "Region": REGION},
            CopyStatus="Replaced",
            Metadata={"x-cos-meta-origin": "updated"},
        )
        head = self.cos.head_object(Bucket=BUCKET, Key=src)
        self.assertEqual(head["x-cos-meta-origin"], "updated")
        self.assertEqual(read_body(self.cos.get_object(Bucket=BUCKET, Key=src)), body)

        self.expect_error(
            lambda: self.cos.copy_object(
                Bucket=BUCKET,
                Key=dst,
                CopySource={"Bucket": BUCKET, "Key": self.key("missing"), "Region": REGION},
            ),
            404,
            "NoSuchCopySource",
        )

    def test_copy_across_buckets(self):
        src = self.key("cross/source.txt")
        body = self.put_source(src)
        dst = self.key("cross/dest.txt")

        r = self.cos.copy_object(
            Bucket=BUCKET2, Key=dst, CopySource={"Bucket": BUCKET, "Key": src, "Region": REGION}
        )
        self.check_copy_result(r, body)
        head = self.cos.head_object(Bucket=BUCKET2, Key=dst)
        self.assertEqual(head["x-cos-meta-origin"], "source")
        self.assertEqual(head["x-cos-meta-keep"], "yes")
        self.assertEqual(read_body(self.cos.get_object(Bucket=BUCKET2, Key=dst)), body)
        self.assert_missing(dst, bucket=BUCKET)

        back = self.key("cross/back.txt")
        r = self.cos.copy_object(
            Bucket=BUCKET,
            Key=back,
            CopySource={"Bucket": BUCKET2, "Key": dst, "Region": REGION},
            CopyStatus="Replaced",
            Metadata={"x-cos-meta-origin": "second"},
        )
        self.check_copy_result(r, body)
        head = self.cos.head_object(Bucket=BUCKET, Key=back)
        self.assertEqual(head["x-cos-meta-origin"], "second")
        self.assertNotIn("x-cos-meta-keep", head)
        self.assertEqual(read_body(self.cos.get_object(Bucket=BUCKET, Key=back)), body)

        listed, _, _ = self.list_all(self.prefix, bucket=BUCKET2)
        self.assertEqual(listed, [dst])


# ---------------------------------------------------------------------------------------------
# Multipart


class MultipartTests(Base):
    def start(self, key, **kw):
        r = self.cos.create_multipart_upload(Bucket=BUCKET, Key=key, **kw)
        self.assertEqual(r["Bucket"], BUCKET)
        self.assertEqual(r["Key"], key)
        self.assertTrue(r["UploadId"])
        return r["UploadId"]

    def part(self, key, upload_id, n, body, **kw):
        r = self.cos.upload_part(Bucket=BUCKET, Key=key, Body=body, PartNumber=n, UploadId=upload_id, **kw)
        self.assertEqual(r["ETag"], '"%s"' % md5_hex(body))
        self.assertEqual(r["x-cos-hash-crc64ecma"], str(crc64(body)))
        return {"PartNumber": n, "ETag": r["ETag"]}

    def complete(self, key, upload_id, parts):
        return self.cos.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Part": parts}
        )

    def test_multipart_by_hand(self):
        key = self.key("big file (1).bin")
        bodies = [data(MIB, "p1"), data(MIB + 5, "p2"), data(12345, "p3")]
        upload_id = self.start(key, ContentType="application/x-big", Metadata={"x-cos-meta-kind": "multi"})
        parts = [self.part(key, upload_id, i + 1, b) for i, b in enumerate(bodies)]

        listed = self.cos.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id)
        self.assertEqual(listed["Key"], key)
        self.assertEqual(listed["UploadId"], upload_id)
        self.assertEqual(listed["IsTruncated"], "false")
        self.assertEqual([p["PartNumber"] for p in listed["Part"]], ["1", "2", "3"])
        self.assertEqual([p["ETag"] for p in listed["Part"]], [p["ETag"] for p in parts])
        self.assertEqual([p["Size"] for p in listed["Part"]], [str(len(b)) for b in bodies])

        page = self.cos.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id, MaxParts=2)
        self.assertEqual(page["IsTruncated"], "true")
        self.assertEqual([p["PartNumber"] for p in page["Part"]], ["1", "2"])
        rest = self.cos.list_parts(
            Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumberMarker=int(page["NextPartNumberMarker"])
        )
        self.assertEqual([p["PartNumber"] for p in rest["Part"]], ["3"])

        uploads = self.cos.list_multipart_uploads(Bucket=BUCKET, Prefix=self.prefix)
        found = [(u["Key"], u["UploadId"]) for u in uploads.get("Upload", [])]
        self.assertEqual(found, [(key, upload_id)])

        r = self.complete(key, upload_id, parts)
        whole = b"".join(bodies)
        self.assertEqual(r["Key"], key)
        self.assertEqual(r["Bucket"], BUCKET)
        self.assertRegex(r["ETag"], r'^"[0-9a-f]{32}-3"$')
        self.assertEqual(r["x-cos-hash-crc64ecma"], str(crc64(whole)))

        head = self.cos.head_object(Bucket=BUCKET, Key=key)
        self.assertEqual(head["Content-Length"], str(len(whole)))
        self.assertEqual(head["ETag"], r["ETag"])
        self.assertEqual(head["x-cos-meta-kind"], "multi")
        self.assertEqual(head["Content-Type"], "application/x-big")
        self.assertEqual(head["x-cos-hash-crc64ecma"], str(crc64(whole)))
        got = read_body(self.cos.get_object(Bucket=BUCKET, Key=key))
        self.assertEqual(md5_hex(got), md5_hex(whole))

        uploads = self.cos.list_multipart_uploads(Bucket=BUCKET, Prefix=self.prefix)
        self.assertFalse(uploads.get("Upload"), "a completed upload is no longer listed")
        self.expect_error(
            lambda: self.cos.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id), 404, "NoSuchUpload"
        )

    def test_abort(self):
        key = self.key("aborted.bin")
        upload_id = self.start(key)
        self.part(key, upload_id, 1, data(1000, "a1"))
        self.cos.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
        self.expect_error(
            lambda: self.cos.upload_part(
                Bucket=BUCKET, Key=key, Body=b"more", PartNumber=2, UploadId=upload_id
            ),
            404,
            "NoSuchUpload",
        )
        self.expect_error(
            lambda: self.cos.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id),
            404,
            "NoSuchUpload",
        )
        self.expect_error(
            lambda: self.complete(key, upload_id, [{"PartNumber": 1, "ETag": '"x"'}]), 404, "NoSuchUpload"
        )
        uploads = self.cos.list_multipart_uploads(Bucket=BUCKET, Prefix=self.prefix)
        self.assertFalse(uploads.get("Upload"))
        self.assert_missing(key)

    def test_upload_part_copy(self):
        src = self.key("copy-source.bin")
        src_body = data(2 * MIB + 100, "copy-src")
        self.cos.put_object(Bucket=BUCKET2, Key=src, Body=src_body)
        source = {"Bucket": BUCKET2, "Key": src, "Region": REGION}

        key = self.key("assembled.bin")
        upload_id = self.start(key)
        r1 = self.cos.upload_part_copy(
            Bucket=BUCKET, Key=key, PartNumber=1, UploadId=upload_id, CopySource=source,
            CopySourceRange="bytes=0-%d" % (MIB - 1),
        )
        self.assertEqual(r1["ETag"], '"%s"' % md5_hex(src_body[:MIB]))
        self.assertEqual(r1["x-cos-hash-crc64ecma"], str(crc64(src_body[:MIB])))
        r2 = self.cos.upload_part_copy(
            Bucket=BUCKET, Key=key, PartNumber=2, UploadId=upload_id, CopySource=source,
            CopySourceRange="bytes=%d-%d" % (MIB, 2 * MIB + 99),
        )
        self.assertEqual(r2["ETag"], '"%s"' % md5_hex(src_body[MIB:]))
        tail = data(777, "tail")
        p3 = self.part(key, upload_id, 3, tail)
        listed = self.cos.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id)
        self.assertEqual([p["Size"] for p in listed["Part"]], [str(MIB), str(MIB + 100), "777"])

        r = self.complete(
            key, upload_id,
            [{"PartNumber": 1, "ETag": r1["ETag"]}, {"PartNumber": 2, "ETag": r2["ETag"]}, p3],
        )
        whole = src_body + tail
        self.assertEqual(r["x-cos-hash-crc64ecma"], str(crc64(whole)))
        got = read_body(self.cos.get_object(Bucket=BUCKET, Key=key))
        self.assertEqual(len(got), len(whole))
        self.assertEqual(md5_hex(got), md5_hex(whole))

    def test_entity_too_small(self):
        key = self.key("small-parts.bin")
        upload_id = self.start(key)
        parts = [self.part(key, upload_id, 1, data(100 * 1024, "s1")), self.part(key, upload_id, 2, data(10, "s2"))]
        self.expect_error(lambda: self.complete(key, upload_id, parts), 400, "EntityTooSmall")
        self.assert_missing(key)
        # The upload survives a refused Complete; a single small part (the last) is fine.
        r = self.complete(key, upload_id, [parts[0]])
        self.assertRegex(r["ETag"], r'-1"$')
        self.assertEqual(read_body(self.cos.get_object(Bucket=BUCKET, Key=key)), data(100 * 1024, "s1"))

    def test_wrong_etag(self):
        key = self.key("wrong-etag.bin")
        upload_id = self.start(key)
        p1 = self.part(key, upload_id, 1, data(MIB, "w1"))
        p2 = self.part(key, upload_id, 2, data(MIB, "w2"))
        bad = {"PartNumber": 2, "ETag": '"%s"' % md5_hex(b"something else")}
        self.expect_error(lambda: self.complete(key, upload_id, [p1, bad]), 400, "InvalidPart")
        self.expect_error(
            lambda: self.complete(key, upload_id, [p1, p2, {"PartNumber": 3, "ETag": p2["ETag"]}]),
            400,
            "InvalidPart",
        )
        self.assert_missing(key)
        self.complete(key, upload_id, [p1, p2])
        self.assertEqual(self.cos.head_object(Bucket=BUCKET, Key=key)["Content-Length"], str(2 * MIB))

    def test_non_contiguous_parts(self):
        key = self.key("gap.bin")
        upload_id = self.start(key)
        p1 = self.part(key, upload_id, 1, data(MIB, "g1"))
        p3 = self.part(key, upload_id, 3, data(MIB, "g3"))
        # COS, unlike S3, rejects gaps in the part numbers (§3.13).
        self.expect_error(lambda: self.complete(key, upload_id, [p1, p3]), 400, "InvalidPart")
        self.assert_missing(key)

    def test_descending_parts(self):
        key = self.key("order.bin")
        upload_id = self.start(key)
        p1 = self.part(key, upload_id, 1, data(MIB, "o1"))
        p2 = self.part(key, upload_id, 2, data(MIB, "o2"))
        self.expect_error(lambda: self.complete(key, upload_id, [p2, p1]), 400, "InvalidPartOrder")
        self.assert_missing(key)
        self.complete(key, upload_id, [p1, p2])
        self.assertEqual(self.cos.head_object(Bucket=BUCKET, Key=key)["Content-Length"], str(2 * MIB))

    def test_upload_file_and_download_file(self):
        body = data(5 * MIB + 12345, "upload-file")
        src = os.path.join(WORK, "upload-%s.bin" % uuid.uuid4().hex[:8])
        with open(src, "wb") as f:
            f.write(body)
        key = self.key("uploaded file.bin")
        r = self.cos.upload_file(Bucket=BUCKET, Key=key, LocalFilePath=src, PartSize=1, MAXThread=4)
        self.assertRegex(r["ETag"], r'^"[0-9a-f]{32}-6"$', "5 MiB + a bit in 1 MiB parts is multipart")
        self.assertEqual(r["x-cos-hash-crc64ecma"], str(crc64(body)))

        dst = os.path.join(WORK, "download-%s.bin" % uuid.uuid4().hex[:8])
        # Small PartSize forces the SDK's ranged, multi-threaded download with CRC check.
        self.cos.download_file(
            Bucket=BUCKET, Key=key, DestFilePath=dst, PartSize=1, MAXThread=4, EnableCRC=True,
            DumpRecordDir=os.path.join(WORK, "records"),
        )
        with open(dst, "rb") as f:
            self.assertEqual(md5_hex(f.read()), md5_hex(body))

        dst2 = dst + ".simple"
        self.cos.download_file(Bucket=BUCKET, Key=key, DestFilePath=dst2)
        with open(dst2, "rb") as f:
            self.assertEqual(md5_hex(f.read()), md5_hex(body))


# ---------------------------------------------------------------------------------------------
# Server-side encryption


class SseTests(Base):
    KEY1 = bytes(range(32))
    KEY2 = b"0123456789ABCDEF0123456789ABCDEF"

    def test_sse_cos(self):
        key = self.key("sse-cos.txt")
        body = data(3000, "sse-cos")
        r = self.cos.put_object(Bucket=BUCKET, Key=key, Body=body, ServerSideEncryption="AES256")
        self.assertEqual(r["x-cos-server-side-encryption"], "AES256")
        self.assertEqual(r["ETag"], '"%s"' % md5_hex(body), "SSE-COS keeps the MD5 ETag (§4)")
        head = self.cos.head_object(Bucket=BUCKET, Key=key)
        self.assertEqual(head["x-cos-server-side-encryption"], "AES256")
        got = self.cos.get_object(Bucket=BUCKET, Key=key)
        self.assertEqual(got["x-cos-server-side-encryption"], "AES256")
        self.assertEqual(read_body(got), body)

        mkey = self.key("sse-cos-multipart.bin")
        init = self.cos.create_multipart_upload(Bucket=BUCKET, Key=mkey, ServerSideEncryption="AES256")
        part = self.cos.upload_part(Bucket=BUCKET, Key=mkey, Body=body, PartNumber=1, UploadId=init["UploadId"])
        self.assertEqual(part["x-cos-server-side-encryption"], "AES256")
        done = self.cos.complete_multipart_upload(
            Bucket=BUCKET, Key=mkey, UploadId=init["UploadId"],
            MultipartUpload={"Part": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
        self.assertEqual(done["x-cos-server-side-encryption"], "AES256")
        self.assertEqual(
            self.cos.head_object(Bucket=BUCKET, Key=mkey)["x-cos-server-side-encryption"], "AES256"
        )

    def test_sse_kms(self):
        key = self.key("sse-kms.txt")
        body = data(2000, "sse-kms")
        kms_key = "48ba38aa-26c5-11ea-855c-52540085aaaa"
        context = base64.b64encode(json.dumps({"project": "cosmount"}).encode()).decode()
        r = self.cos.put_object(
            Bucket=BUCKET, Key=key, Body=body,
            ServerSideEncryption="cos/kms", SSEKMSKeyId=kms_key, SSEKMSContext=context,
        )
        self.assertEqual(r["x-cos-server-side-encryption"], "cos/kms")
        self.assertEqual(r["x-cos-server-side-encryption-cos-kms-key-id"], kms_key)
        self.assertRegex(r["ETag"], r'^"[0-9a-f]{32}"$')
        self.assertEqual(r["x-cos-hash-crc64ecma"], str(crc64(body)), "CRC64 is of the plaintext (§4)")
        head = self.cos.head_object(Bucket=BUCKET, Key=key)
        self.assertEqual(head["x-cos-server-side-encryption"], "cos/kms")
        self.assertEqual(head["x-cos-server-side-encryption-cos-kms-key-id"], kms_key)
        self.assertEqual(head["ETag"], r["ETag"])
        self.assertEqual(read_body(self.cos.get_object(Bucket=BUCKET, Key=key)), body)

    def test_sse_c_round_trip(self):
        key = self.key("sse-c.bin")
        body = data(5000, "sse-c")
        p = sse_c(self.KEY1)
        r = self.cos.put_object(Bucket=BUCKET, Key=key, Body=body, **p)
        self.assertEqual(r["x-cos-server-side-encryption-customer-algorithm"], "AES256")
        self.assertEqual(r["x-cos-server-side-encryption-customer-key-MD5"], p["SSECustomerKeyMD5"])
        self.assertNotIn("x-cos-server-side-encryption-customer-key", r, "the key is never echoed")
        self.assertEqual(r["x-cos-hash-crc64ecma"], str(crc64(body)))

        got = self.cos.get_object(Bucket=BUCKET, Key=key, **p)
        self.assertEqual(read_body(got), body)
        self.assertEqual(got["x-cos-server-side-encryption-customer-algorithm"], "AES256")
        self.assertEqual(got["x-cos-server-side-encryption-customer-key-MD5"], p["SSECustomerKeyMD5"])
        head = self.cos.head_object(Bucket=BUCKET, Key=key, **p)
        self.assertEqual(head["Content-Length"], str(len(body)))
        self.assertEqual(head["x-cos-server-side-encryption-customer-algorithm"], "AES256")
        self.assertEqual(head["x-cos-server-side-encryption-customer-key-MD5"], p["SSECustomerKeyMD5"])
        ranged = self.cos.get_object(Bucket=BUCKET, Key=key, Range="bytes=10-19", **p)
        self.assertEqual(read_body(ranged), body[10:20])

    def test_sse_c_without_or_with_wrong_key(self):
        key = self.key("sse-c-locked.bin")
        body = data(1000, "locked")
        self.cos.put_object(Bucket=BUCKET, Key=key, Body=body, **sse_c(self.KEY1))
        wrong = sse_c(self.KEY2)

        self.expect_error(lambda: self.cos.get_object(Bucket=BUCKET, Key=key), 400, "SsecDecryptHeaderInvalid")
        self.expect_error(
            lambda: self.cos.get_object(Bucket=BUCKET, Key=key, **wrong), 400, "SsecDecryptHeaderInvalid"
        )
        # HEAD errors carry no body: only the status is defined (§6).
        self.expect_error(lambda: self.cos.head_object(Bucket=BUCKET, Key=key), 400)
        self.expect_error(lambda: self.cos.head_object(Bucket=BUCKET, Key=key, **wrong), 400)
        # The object is still there and readable with the right key.
        self.assertEqual(read_body(self.cos.get_object(Bucket=BUCKET, Key=key, **sse_c(self.KEY1))), body)
        # Listing shows SSE-C objects like any other (§6).
        listed, _, _ = self.list_all(self.prefix)
        self.assertEqual(listed, [key])

    def test_sse_c_copy(self):
        src = self.key("sse-c-source.bin")
        body = data(4000, "sse-c-copy")
        self.cos.put_object(Bucket=BUCKET, Key=src, Body=body, **sse_c(self.KEY1))
        source = {"Bucket": BUCKET, "Key": src, "Region": REGION}

        # Without the copy-source key trio the source cannot be read.
        self.expect_error(
            lambda: self.cos.copy_object(Bucket=BUCKET, Key=self.key("nokey.bin"), CopySource=source),
            400,
            "SsecDecryptHeaderInvalid",
        )
        self.expect_error(
            lambda: self.cos.copy_object(
                Bucket=BUCKET, Key=self.key("wrongkey.bin"), CopySource=source, **copy_source_sse_c(self.KEY2)
            ),
            400,
            "SsecDecryptHeaderInvalid",
        )
        self.assert_missing(self.key("nokey.bin"))

        # With it, and no destination SSE: the copy is stored unencrypted (rule 9).
        plain = self.key("plain-copy.bin")
        r = self.cos.copy_object(Bucket=BUCKET, Key=plain, CopySource=source, **copy_source_sse_c(self.KEY1))
        self.assertIn("ETag", r)
        head = self.cos.head_object(Bucket=BUCKET, Key=plain)
        self.assertNotIn("x-cos-server-side-encryption-customer-algorithm", head)
        self.assertNotIn("x-cos-server-side-encryption", head)
        self.assertEqual(read_body(self.cos.get_object(Bucket=BUCKET, Key=plain)), body)

        # Re-encrypting under a new key: the destination needs the new key.
        rekeyed = self.key("rekeyed.bin")
        params = dict(copy_source_sse_c(self.KEY1))
        params.update(sse_c(self.KEY2))
        r = self.cos.copy_object(Bucket=BUCKET, Key=rekeyed, CopySource=source, **params)
        self.assertEqual(r["x-cos-server-side-encryption-customer-algorithm"], "AES256")
        self.assertEqual(r["x-cos-server-side-encryption-customer-key-MD5"], sse_c(self.KEY2)["SSECustomerKeyMD5"])
        self.assertEqual(read_body(self.cos.get_object(Bucket=BUCKET, Key=rekeyed, **sse_c(self.KEY2))), body)
        self.expect_error(
            lambda: self.cos.get_object(Bucket=BUCKET, Key=rekeyed, **sse_c(self.KEY1)), 400, "SsecDecryptHeaderInvalid"
        )

    def test_sse_c_multipart(self):
        key = self.key("sse-c-multipart.bin")
        p = sse_c(self.KEY1)
        init = self.cos.create_multipart_upload(Bucket=BUCKET, Key=key, **p)
        self.assertTrue(init.get("UploadId"))
        upload_id = init["UploadId"]
        bodies = [data(MIB, "c1"), data(1000, "c2")]
        # Upload Part of an SSE-C upload needs the same key (§3.11).
        self.expect_error(
            lambda: self.cos.upload_part(Bucket=BUCKET, Key=key, Body=bodies[0], PartNumber=1, UploadId=upload_id),
            400,
        )
        parts = []
        for i, b in enumerate(bodies):
            r = self.cos.upload_part(Bucket=BUCKET, Key=key, Body=b, PartNumber=i + 1, UploadId=upload_id, **p)
            self.assertEqual(r["x-cos-server-side-encryption-customer-algorithm"], "AES256")
            parts.append({"PartNumber": i + 1, "ETag": r["ETag"]})
        self.cos.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Part": parts})
        self.assertEqual(read_body(self.cos.get_object(Bucket=BUCKET, Key=key, **p)), b"".join(bodies))
        self.expect_error(lambda: self.cos.get_object(Bucket=BUCKET, Key=key), 400, "SsecDecryptHeaderInvalid")


# ---------------------------------------------------------------------------------------------
# Authentication


class AuthTests(Base):
    def test_wrong_secret_key(self):
        key = self.key("forged.txt")
        bad = make_client(secret_key=SECRET_KEY + "x")
        self.expect_error(
            lambda: bad.put_object(Bucket=BUCKET, Key=key, Body=b"forged"), 403, "SignatureDoesNotMatch"
        )
        self.expect_error(lambda: bad.get_object(Bucket=BUCKET, Key=key), 403, "SignatureDoesNotMatch")
        self.expect_error(lambda: bad.list_objects(Bucket=BUCKET, Prefix=self.prefix), 403, "SignatureDoesNotMatch")
        self.assert_missing(key)

    def test_unknown_secret_id(self):
        key = self.key("unknown-id.txt")
        stranger = make_client(secret_id="AKIDnobodyknowsthisone")
        self.expect_error(
            lambda: stranger.put_object(Bucket=BUCKET, Key=key, Body=b"x"), 403, "InvalidAccessKeyId"
        )
        self.expect_error(lambda: stranger.list_buckets(), 403, "InvalidAccessKeyId")
        self.assert_missing(key)

    def test_temporary_credentials(self):
        key = self.key("sts.txt")
        good = make_client(STS_PORT, token=TOKEN)
        good.put_object(Bucket=BUCKET, Key=key, Body=b"temporary")
        self.assertEqual(read_body(good.get_object(Bucket=BUCKET, Key=key)), b"temporary")
        self.assertIn(BUCKET, [b["Name"] for b in good.list_buckets()["Buckets"]["Bucket"]])

        for name, cos in (
            ("no token", make_client(STS_PORT)),
            ("wrong token", make_client(STS_PORT, token=TOKEN + "-forged")),
        ):
            with self.subTest(name):
                self.expect_error(lambda: cos.get_object(Bucket=BUCKET, Key=key), 403)
                self.expect_error(lambda: cos.put_object(Bucket=BUCKET, Key=key + ".2", Body=b"x"), 403)
        self.expect_error(lambda: good.head_object(Bucket=BUCKET, Key=key + ".2"), 404)

        # Presigned URL with temporary credentials: the token goes as a signed query param (§2.5).
        url = good.get_presigned_download_url(Bucket=BUCKET, Key=key, Params={"x-cos-security-token": TOKEN})
        r = requests.get(url, proxies=proxies(STS_PORT), timeout=10)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.content, b"temporary")
        url = good.get_presigned_download_url(Bucket=BUCKET, Key=key)
        r = requests.get(url, proxies=proxies(STS_PORT), timeout=10)
        self.assertEqual(r.status_code, 403, r.text)

    def test_presigned_url(self):
        key = self.key("shared file (1)+.txt")
        body = data(777, "presigned")
        self.cos.put_object(Bucket=BUCKET, Key=key, Body=body)

        url = self.cos.get_presigned_download_url(Bucket=BUCKET, Key=key, Expired=120)
        parts = urlsplit(url)
        self.assertEqual(parts.netloc, "%s.cos.%s.myqcloud.com" % (BUCKET, REGION))
        self.assertIn("q-signature=", parts.query)
        r = requests.get(url, proxies=proxies(PORT), timeout=10)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.content, body)

        url2 = self.cos.get_presigned_url(Bucket=BUCKET, Key=key, Method="GET")
        r = requests.get(url2, proxies=proxies(PORT), timeout=10)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.content, body)

        # Tampered signature.
        q = parse_qsl(parts.query, keep_blank_values=True)
        sig = dict(q)["q-signature"]
        forged_sig = ("0" if sig[0] != "0" else "1") + sig[1:]
        forged = urlunsplit(parts._replace(query=urlencode([(k, forged_sig if k == "q-signature" else v) for k, v in q])))
        r = requests.get(forged, proxies=proxies(PORT), timeout=10)
        self.assertEqual(r.status_code, 403)
        self.assertIn("<Code>SignatureDoesNotMatch</Code>", r.text)

        # The signature is bound to the path: the same query on another key fails.
        other = urlunsplit(parts._replace(path=parts.path + "x"))
        r = requests.get(other, proxies=proxies(PORT), timeout=10)
        self.assertEqual(r.status_code, 403)

        # Expired URL (the SDK backdates the start by 60 s, so a negative validity is expired).
        expired = self.cos.get_presigned_download_url(Bucket=BUCKET, Key=key, Expired=-30)
        r = requests.get(expired, proxies=proxies(PORT), timeout=10)
        self.assertEqual(r.status_code, 403)
        self.assertIn("<Code>AccessDenied</Code>", r.text)
        self.assertIn("Request has expired", r.text)

        # A presigned PUT uploads without an Authorization header.
        put_key = self.key("presigned-put.txt")
        put_url = self.cos.get_presigned_url(Bucket=BUCKET, Key=put_key, Method="PUT")
        r = requests.put(put_url, data=b"uploaded via URL", proxies=proxies(PORT), timeout=10)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.headers["ETag"], '"%s"' % md5_hex(b"uploaded via URL"))
        self.assertEqual(read_body(self.cos.get_object(Bucket=BUCKET, Key=put_key)), b"uploaded via URL")

        # No signature at all: anonymous access to a private bucket.
        r = requests.get(urlunsplit(parts._replace(query="")), proxies=proxies(PORT), timeout=10)
        self.assertEqual(r.status_code, 403)
        self.assertIn("<Code>AccessDenied</Code>", r.text)


# ---------------------------------------------------------------------------------------------
# Fault injection (third emulator: complete:error200:x1, copy:error200:x1, put:503:x2).
# The fault counters are global to that emulator, so the tests run in name order (a_, b_, c_)
# and nothing else talks to it.


class FaultInjectionTests(Base):
    port = FAULT_PORT

    def test_a_put_retries_through_503(self):
        cos = make_client(FAULT_PORT, retry=3)
        key = self.key("retried.txt")
        body = data(2048, "retry")
        r = cos.put_object(Bucket=BUCKET, Key=key, Body=body)
        self.assertEqual(r["ETag"], '"%s"' % md5_hex(body))
        self.assertEqual(cos.get_retry_exe_times(), 2, "two injected 503s mean two retries")
        self.assertEqual(read_body(cos.get_object(Bucket=BUCKET, Key=key)), body)
        # Both 503s are used up: the next put goes through at once.
        again = make_client(FAULT_PORT, retry=0)
        again.put_object(Bucket=BUCKET, Key=key + ".2", Body=b"ok")
        self.assertEqual(again.get_retry_exe_times(), 0)

    def test_b_copy_200_with_error(self):
        cos = make_client(FAULT_PORT, retry=3)
        src = self.key("source.txt")
        body = data(3000, "copy-src")
        cos.put_object(Bucket=BUCKET, Key=src, Body=body)
        dst = self.key("copied.txt")
        source = {"Bucket": BUCKET, "Key": src, "Region": REGION}
        with self.assertRaises((CosServiceError, CosClientError)) as cm:
            cos.copy_object(Bucket=BUCKET, Key=dst, CopySource=source)
        e = cm.exception
        if isinstance(e, CosServiceError):
            self.assertEqual(e.get_status_code(), 200, "the error arrived inside a 200 (§3.6)")
            self.assertEqual(e.get_error_code(), "InternalError")
        self.assertEqual(cos.get_retry_exe_times(), 0, "a 200 is never retried by the SDK")
        r = cos.copy_object(Bucket=BUCKET, Key=dst, CopySource=source)
        self.assertEqual(r["ETag"], '"%s"' % md5_hex(body))
        self.assertEqual(read_body(cos.get_object(Bucket=BUCKET, Key=dst)), body)

    def test_c_complete_200_with_error(self):
        cos = make_client(FAULT_PORT, retry=3)
        key = self.key("completed.bin")
        bodies = [data(MIB, "f1"), data(100, "f2")]
        upload_id = cos.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        parts = []
        for i, b in enumerate(bodies):
            r = cos.upload_part(Bucket=BUCKET, Key=key, Body=b, PartNumber=i + 1, UploadId=upload_id)
            parts.append({"PartNumber": i + 1, "ETag": r["ETag"]})
        with self.assertRaises((CosServiceError, CosClientError)) as cm:
            cos.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Part": parts})
        e = cm.exception
        if isinstance(e, CosServiceError):
            self.assertEqual(e.get_status_code(), 200, "the error arrived inside a 200 (§3.13)")
            self.assertEqual(e.get_error_code(), "InternalError")
        r = cos.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Part": parts})
        self.assertRegex(r["ETag"], r'-2"$')
        whole = b"".join(bodies)
        self.assertEqual(r["x-cos-hash-crc64ecma"], str(crc64(whole)))
        self.assertEqual(md5_hex(read_body(cos.get_object(Bucket=BUCKET, Key=key))), md5_hex(whole))


if __name__ == "__main__":
    unittest.main()
