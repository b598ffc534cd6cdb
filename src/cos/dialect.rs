//! The two dialects a client speaks: COS's own XML API (q-sign-algorithm=sha1, `x-cos-*`
//! headers) and S3's (AWS Signature Version 4, `x-amz-*` headers), which COS serves too
//! (cos-protocol.md §8) and every S3-compatible store speaks.
//!
//! The rest of the client is written in COS's spelling. This is the one place that knows the
//! other: on the way out each header is renamed (and the few values that differ translated),
//! on the way in the response's headers are renamed back, the request is signed with the
//! dialect's signature, the copy source and bucket names take the dialect's form, and listings
//! use S3's ListObjectsV2. The dialect is chosen once, when the client is made.

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::auth::{self, Credentials, KeyTime, SignRequest};
use super::sigv4::{self, SigV4Request, UNSIGNED_PAYLOAD};

/// Which API a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Api {
    /// COS's XML API: its signature, `x-cos-*` headers, `<bucket>.cos.<region>.myqcloud.com`.
    #[default]
    Cos,
    /// The S3 API: SigV4, `x-amz-*` headers (and s3fs's `x-amz-meta-*` attribute names),
    /// path-style or virtual-host addressing, ListObjectsV2.
    S3,
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Api::Cos => "cos",
            Api::S3 => "s3",
        })
    }
}

/// The region an S3 request is signed for when none is given (what AWS's SDKs and
/// S3-compatible stores assume).
pub const S3_DEFAULT_REGION: &str = "us-east-1";

/// Bodies up to this size are hashed for `x-amz-content-sha256`; larger ones (file data,
/// streamed) are sent as `UNSIGNED-PAYLOAD`, which S3 allows, so that SHA-256 does not double
/// the CPU a written GiB costs. TLS protects those bodies on the way.
const HASHED_BODY_MAX: u64 = 64 * 1024;

/// What is different in the name or value of a header beyond its prefix: (COS, S3).
const RENAMED: &[(&str, &str)] = &[(
    "x-cos-server-side-encryption-cos-kms-key-id",
    "x-amz-server-side-encryption-aws-kms-key-id",
)];
/// Values of (COS header, COS value, S3 value).
const VALUES: &[(&str, &str, &str)] = &[
    ("x-cos-server-side-encryption", "cos/kms", "aws:kms"),
    ("x-cos-metadata-directive", "Copy", "COPY"),
    ("x-cos-metadata-directive", "Replaced", "REPLACE"),
];

/// A request's body as the signature sees it.
pub enum Payload<'a> {
    /// Hashed (empty, or small and in memory).
    Bytes(&'a [u8]),
    /// Streamed or large: not hashed.
    Unhashed,
}

impl<'a> Payload<'a> {
    /// `bytes` when it is small enough to hash, else unhashed; `len` is the body's length.
    pub fn of(bytes: Option<&'a [u8]>, len: u64) -> Self {
        match bytes {
            Some(b) if len <= HASHED_BODY_MAX => Payload::Bytes(b),
            None if len == 0 => Payload::Bytes(&[]),
            _ => Payload::Unhashed,
        }
    }
}

/// One request at the moment it is signed: the headers are already in the dialect's spelling.
pub struct Outgoing<'a> {
    pub method: &'a str,
    pub url: &'a url::Url,
    /// The object key (decoded), for COS's signature, which signs `/<key>`.
    pub key: Option<&'a str>,
    pub params: &'a [(String, String)],
    pub payload: Payload<'a>,
}

impl Api {
    /// `cos` or `s3` (also `sigv4`, s3fs's spelling of the signature).
    pub fn parse(s: &str) -> Option<Api> {
        match s.to_ascii_lowercase().as_str() {
            "cos" => Some(Api::Cos),
            "s3" | "sigv4" | "aws" => Some(Api::S3),
            _ => None,
        }
    }

    /// The prefix of the vendor's headers.
    pub fn prefix(self) -> &'static str {
        match self {
            Api::Cos => "x-cos-",
            Api::S3 => "x-amz-",
        }
    }

    /// A header, given in COS's spelling, as it goes on the wire.
    pub fn outgoing(self, name: &HeaderName, value: &HeaderValue) -> (HeaderName, HeaderValue) {
        let n = name.as_str();
        if self == Api::Cos || !n.starts_with("x-cos-") {
            return (name.clone(), value.clone());
        }
        let wire = match RENAMED.iter().find(|(c, _)| *c == n) {
            Some((_, s)) => (*s).to_string(),
            None => format!("x-amz-{}", &n["x-cos-".len()..]),
        };
        let value = VALUES
            .iter()
            .find(|(h, c, _)| *h == n && value.as_bytes() == c.as_bytes())
            .map(|(_, _, s)| HeaderValue::from_static(s))
            .unwrap_or_else(|| value.clone());
        (
            HeaderName::from_bytes(wire.as_bytes()).expect("a valid header name"),
            value,
        )
    }

    /// Renames a response's headers into COS's spelling, so the client reads one set of names.
    pub fn incoming(self, headers: &mut HeaderMap) {
        if self == Api::Cos {
            return;
        }
        let vendor: Vec<HeaderName> = headers
            .keys()
            .filter(|n| n.as_str().starts_with("x-amz-"))
            .cloned()
            .collect();
        for name in vendor {
            let n = name.as_str();
            let cos = match RENAMED.iter().find(|(_, s)| *s == n) {
                Some((c, _)) => (*c).to_string(),
                None => format!("x-cos-{}", &n["x-amz-".len()..]),
            };
            let cos = HeaderName::from_bytes(cos.as_bytes()).expect("a valid header name");
            let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
            headers.remove(&name);
            for v in values {
                let v = VALUES
                    .iter()
                    .find(|(h, _, s)| *h == cos.as_str() && v.as_bytes() == s.as_bytes())
                    .map(|(_, c, _)| HeaderValue::from_static(c))
                    .unwrap_or(v);
                headers.append(cos.clone(), v);
            }
        }
    }

    /// The `copy-source` header's value for `key` (already percent-encoded) of `bucket`: COS
    /// names the bucket's host, S3 the bucket.
    pub fn copy_source(self, bucket: &str, cos_host: &str, encoded_key: &str) -> String {
        match self {
            Api::Cos => format!("{cos_host}/{encoded_key}"),
            Api::S3 => format!("/{bucket}/{encoded_key}"),
        }
    }

    /// A key from a listing asked for with `encoding-type=url`: S3 encodes it as a form value
    /// (a space is `+`, a `+` is `%2B`), COS with `%XX` only.
    pub fn decode_listed(self, s: &str) -> String {
        let s = match self {
            Api::Cos => std::borrow::Cow::Borrowed(s),
            Api::S3 => std::borrow::Cow::Owned(s.replace('+', " ")),
        };
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    }

    /// Checks a bucket name: COS's `<name>-<appid>`, or S3's rules (3 to 63 lower-case
    /// letters, digits, dots and dashes, starting and ending with a letter or digit).
    pub fn validate_bucket(self, name: &str) -> Result<(), String> {
        match self {
            Api::Cos => crate::emulator::validate_bucket_name(name),
            Api::S3 => {
                let edge_ok = |b: Option<&u8>| {
                    b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                };
                let ok = (3..=63).contains(&name.len())
                    && name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    })
                    && edge_ok(name.as_bytes().first())
                    && edge_ok(name.as_bytes().last())
                    && !name.contains("..");
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "bucket {name:?} is not a valid S3 bucket name (3 to 63 lowercase letters, digits, dots and dashes)"
                    ))
                }
            }
        }
    }

    /// Signs `req`, adding `Authorization` (and, for S3, `x-amz-date` and
    /// `x-amz-content-sha256`) to `headers`, which are already in the dialect's spelling.
    /// `region` is the signing region of S3 (COS's signature has none).
    pub fn sign(
        self,
        credentials: &Credentials,
        region: &str,
        req: &Outgoing<'_>,
        headers: &mut HeaderMap,
        now: u64,
    ) -> Result<(), String> {
        let host = host_header(req.url);
        let authorization = match self {
            Api::Cos => {
                // Host, content-*, range, if-* and every x-cos-* header (§2.3); every parameter.
                let mut signed: Vec<(String, String)> = vec![("host".into(), host)];
                signed.extend(signed_headers(headers, |n| {
                    n.starts_with("x-cos-")
                        || n.starts_with("if-")
                        || matches!(
                            n,
                            "content-length" | "content-md5" | "content-type" | "range"
                        )
                }));
                let path = format!("/{}", req.key.unwrap_or(""));
                auth::sign(
                    credentials.secret_key.expose(),
                    &SignRequest {
                        method: req.method,
                        path: &path,
                        params: req.params,
                        headers: &signed,
                    },
                    KeyTime::around(now),
                )
                .authorization(&credentials.secret_id)
            }
            Api::S3 => {
                let amz_date = sigv4::amz_date(now);
                let payload_hash = match req.payload {
                    Payload::Bytes(b) => sigv4::payload_hash(b),
                    Payload::Unhashed => UNSIGNED_PAYLOAD.to_string(),
                };
                headers.insert("x-amz-date", value(&amz_date)?);
                headers.insert("x-amz-content-sha256", value(&payload_hash)?);
                let mut signed: Vec<(String, String)> = vec![("host".into(), host)];
                signed.extend(signed_headers(headers, |n| {
                    n.starts_with("x-amz-")
                        || n.starts_with("if-")
                        || matches!(n, "content-md5" | "content-type" | "range")
                }));
                sigv4::sign(
                    credentials.secret_key.expose(),
                    &SigV4Request {
                        method: req.method,
                        path: req.url.path(),
                        params: req.params,
                        headers: &signed,
                        payload_hash: &payload_hash,
                    },
                    &sigv4::Scope {
                        amz_date: &amz_date,
                        region,
                        service: "s3",
                    },
                )
                .authorization(&credentials.secret_id)
            }
        };
        let mut v = value(&authorization)
            .map_err(|_| "the SecretId has characters that cannot be sent".to_string())?;
        v.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, v);
        Ok(())
    }
}

fn value(s: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(s).map_err(|_| format!("{s:?} cannot be sent in a header"))
}

/// `host[:port]` as the request's `Host` header carries it.
pub fn host_header(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The headers a signature covers, as (name, value) pairs.
fn signed_headers(headers: &HeaderMap, wanted: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| wanted(n.as_str()))
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(api: Api, name: &str, v: &str) -> (String, String) {
        let (n, v) = api.outgoing(
            &HeaderName::from_bytes(name.as_bytes()).unwrap(),
            &HeaderValue::from_str(v).unwrap(),
        );
        (n.to_string(), v.to_str().unwrap().to_string())
    }

    #[test]
    fn headers_take_the_dialects_names_both_ways() {
        // (dialect, COS name, COS value, wire name, wire value)
        let cases = [
            (
                Api::Cos,
                "x-cos-meta-mode",
                "33188",
                "x-cos-meta-mode",
                "33188",
            ),
            (
                Api::S3,
                "x-cos-meta-mode",
                "33188",
                "x-amz-meta-mode",
                "33188",
            ),
            (
                Api::S3,
                "x-cos-metadata-directive",
                "Replaced",
                "x-amz-metadata-directive",
                "REPLACE",
            ),
            (
                Api::S3,
                "x-cos-server-side-encryption",
                "cos/kms",
                "x-amz-server-side-encryption",
                "aws:kms",
            ),
            (
                Api::S3,
                "x-cos-server-side-encryption-cos-kms-key-id",
                "k",
                "x-amz-server-side-encryption-aws-kms-key-id",
                "k",
            ),
            (Api::S3, "range", "bytes=0-1", "range", "bytes=0-1"),
        ];
        for (api, name, value, wire_name, wire_value) in cases {
            assert_eq!(
                out(api, name, value),
                (wire_name.to_string(), wire_value.to_string())
            );
        }

        let mut h = HeaderMap::new();
        h.insert("x-amz-meta-mode", HeaderValue::from_static("33188"));
        h.insert(
            "x-amz-server-side-encryption",
            HeaderValue::from_static("aws:kms"),
        );
        h.insert("etag", HeaderValue::from_static("\"e\""));
        let mut cos = h.clone();
        Api::Cos.incoming(&mut cos);
        assert_eq!(cos, h);
        Api::S3.incoming(&mut h);
        assert_eq!(h.get("x-cos-meta-mode").unwrap(), "33188");
        assert_eq!(h.get("x-cos-server-side-encryption").unwrap(), "cos/kms");
        assert_eq!(h.get("etag").unwrap(), "\"e\"");
        assert!(h.get("x-amz-meta-mode").is_none());
    }

    #[test]
    fn bucket_names_and_copy_sources() {
        assert!(Api::Cos.validate_bucket("data-1250000000").is_ok());
        assert!(Api::Cos.validate_bucket("data").is_err());
        assert!(Api::S3.validate_bucket("data").is_ok());
        assert!(Api::S3.validate_bucket("my.bucket-1").is_ok());
        for bad in ["ab", "Data", "-data", "data-", "a..b", &"a".repeat(64)] {
            assert!(Api::S3.validate_bucket(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Api::S3.copy_source("b", "b.cos.r.myqcloud.com", "a%20b"),
            "/b/a%20b"
        );
        assert_eq!(
            Api::Cos.copy_source("b", "b.cos.r.myqcloud.com", "a%20b"),
            "b.cos.r.myqcloud.com/a%20b"
        );
        assert_eq!(Api::S3.decode_listed("a+b%2Bc%20d"), "a b+c d");
        assert_eq!(Api::Cos.decode_listed("a+b%2Bc%20d"), "a+b+c d");
        assert_eq!(Api::parse("sigv4"), Some(Api::S3));
        assert_eq!(Api::parse("COS"), Some(Api::Cos));
        assert_eq!(Api::parse("v2"), None);
    }

    #[test]
    fn s3_requests_are_signed_with_sigv4_and_the_payload_hash() {
        let creds = Credentials::new("AKID", "secret");
        let url = url::Url::parse("http://127.0.0.1:8333/b/k").unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-amz-meta-mode", HeaderValue::from_static("33188"));
        let req = Outgoing {
            method: "PUT",
            url: &url,
            key: Some("k"),
            params: &[],
            payload: Payload::of(Some(b"hello"), 5),
        };
        Api::S3
            .sign(&creds, "us-east-1", &req, &mut h, 1_764_506_096)
            .unwrap();
        let auth = h.get("authorization").unwrap().to_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKID/20251130/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-mode, Signature="
        ));
        assert_eq!(
            h.get("x-amz-content-sha256").unwrap(),
            &sigv4::payload_hash(b"hello")
        );
        let big = Payload::of(None, HASHED_BODY_MAX + 1);
        assert!(matches!(big, Payload::Unhashed));
        assert!(matches!(Payload::of(None, 0), Payload::Bytes(b) if b.is_empty()));
    }
}
