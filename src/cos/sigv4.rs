//! AWS Signature Version 4 for S3 (the `Authorization` header form), for COS's S3-compatible
//! API and other S3 stores (cos-protocol.md §8).
//!
//! As `auth.rs` is for COS's own signature, this is a pure function of its inputs: the time is
//! an argument, nothing reads a clock, nothing logs. It is checked byte for byte against the
//! canonical requests, strings to sign and signatures that botocore (AWS's official Python SDK
//! core) produces for the same requests (`tests/data/sigv4-vectors.json`).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// The payload hash of a request whose body is not hashed (`x-amz-content-sha256`).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// RFC 3986's unreserved characters stay as they are; everything else is `%XX` (upper case).
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What is signed about one request.
pub struct SigV4Request<'a> {
    /// HTTP method, upper case as sent.
    pub method: &'a str,
    /// The path exactly as it goes on the wire (percent-encoded once; S3 signs it as sent).
    pub path: &'a str,
    /// Query parameters, decoded.
    pub params: &'a [(String, String)],
    /// Headers to sign (`host`, `x-amz-date`, `x-amz-content-sha256`, ... any case).
    pub headers: &'a [(String, String)],
    /// `x-amz-content-sha256`: the hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    pub payload_hash: &'a str,
}

/// The scope a signature is valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope<'a> {
    /// `YYYYMMDDTHHMMSSZ`, the request's `x-amz-date`.
    pub amz_date: &'a str,
    pub region: &'a str,
    /// `s3`.
    pub service: &'a str,
}

/// Every intermediate value, so tests compare each against the vectors.
#[derive(Clone, PartialEq, Eq)]
pub struct SigV4 {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signed_headers: String,
    pub credential_scope: String,
    pub signature: String,
}

impl fmt::Debug for SigV4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signature is a credential for the request's lifetime.
        f.debug_struct("SigV4")
            .field("signed_headers", &self.signed_headers)
            .field("credential_scope", &self.credential_scope)
            .finish_non_exhaustive()
    }
}

impl SigV4 {
    /// The `Authorization` header value.
    pub fn authorization(&self, access_key: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={access_key}/{}, SignedHeaders={}, Signature={}",
            self.credential_scope, self.signed_headers, self.signature
        )
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// The hex SHA-256 of a body, for `x-amz-content-sha256`.
pub fn payload_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// `k=v&k=v`, names and values encoded, sorted by name then value; an empty value is `k=`.
fn canonical_query(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| {
            (
                utf8_percent_encode(k, QUERY_ENCODE).to_string(),
                utf8_percent_encode(v, QUERY_ENCODE).to_string(),
            )
        })
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Signs `req` with `secret_key` for `scope`.
pub fn sign(secret_key: &str, req: &SigV4Request<'_>, scope: &Scope<'_>) -> SigV4 {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| {
            // Values are trimmed, and runs of spaces inside them become one.
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        req.path,
        canonical_query(req.params),
        canonical_headers,
        signed_headers,
        req.payload_hash
    );
    let date = &scope.amz_date[..scope.amz_date.len().min(8)];
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{credential_scope}\n{}",
        scope.amz_date,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, scope.region.as_bytes());
    let k_service = hmac_sha256(&k_region, scope.service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let signature = hex::encode(hmac_sha256(&k_signing, string_to_sign.as_bytes()));
    SigV4 {
        canonical_request,
        string_to_sign,
        signed_headers,
        credential_scope,
        signature,
    }
}

/// `x-amz-date` for a time in seconds since the epoch.
pub fn amz_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    let (y, m, d) = super::client::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_debug() {
        assert_eq!(amz_date(1_764_506_096), "20251130T123456Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
        let s = sign(
            "secret",
            &SigV4Request {
                method: "GET",
                path: "/",
                params: &[],
                headers: &[("Host".into(), "h".into())],
                payload_hash: UNSIGNED_PAYLOAD,
            },
            &Scope {
                amz_date: "20251130T123456Z",
                region: "r",
                service: "s3",
            },
        );
        assert!(!format!("{s:?}").contains(&s.signature));
        assert_eq!(s.signed_headers, "host");
    }
}
