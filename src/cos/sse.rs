//! Server-side encryption header sets (cos-protocol.md §6, rules 9 and 10).
//!
//! One `Sse` value per client decides, for each kind of request, which headers go out: SSE-COS
//! and SSE-KMS only where an object is written (PUT, Initiate, a Copy destination), never on
//! GET/HEAD; SSE-C's trio on every request that reads or writes the object's bytes (PUT,
//! Initiate, Upload Part, GET, HEAD, the Copy destination) and the copy-source trio when an
//! SSE-C object is the source of a Copy or Upload Part - Copy. SSE-C may have several keys (a
//! rotation, as s3fs's key file allows): the first encrypts what is written, any of them may be
//! the one an object to read was written with (the client tries them, `CosClient`).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::HeaderValue;
use md5::{Digest, Md5};

use super::auth::Secret;

/// A 32-byte SSE-C key, held as the base64 text that goes on the wire, with its MD5 computed
/// once. `Debug` never shows either.
#[derive(Clone, PartialEq, Eq)]
pub struct SseCKey {
    key_b64: Secret,
    md5_b64: String,
}

impl fmt::Debug for SseCKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SseCKey(<redacted>)")
    }
}

impl SseCKey {
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        SseCKey {
            key_b64: Secret::new(B64.encode(key)),
            md5_b64: B64.encode(Md5::digest(key)),
        }
    }

    /// Reads a key file's contents: exactly 32 raw bytes, or the base64 of 32 bytes (surrounding
    /// whitespace allowed). The error text never quotes the contents.
    pub fn from_file_contents(data: &[u8]) -> Result<Self, String> {
        if data.len() == 32 {
            let mut k = [0u8; 32];
            k.copy_from_slice(data);
            return Ok(Self::from_bytes(&k));
        }
        let text = std::str::from_utf8(data)
            .map_err(|_| {
                format!(
                    "SSE-C key must be 32 raw bytes or their base64 (44 characters); got {} bytes that are neither",
                    data.len()
                )
            })?
            .trim();
        let decoded = B64.decode(text).map_err(|_| {
            format!(
                "SSE-C key must be 32 raw bytes or their base64; got {} characters that are not valid base64",
                text.len()
            )
        })?;
        let k: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
            format!(
                "SSE-C key must decode to 32 bytes (AES-256); it decodes to {} bytes",
                decoded.len()
            )
        })?;
        Ok(Self::from_bytes(&k))
    }

    /// The base64 MD5 of the raw key: not a secret by itself, but there is no reason to log it.
    pub fn md5_b64(&self) -> &str {
        &self.md5_b64
    }

    pub fn key_b64(&self) -> &Secret {
        &self.key_b64
    }
}

/// The SSE-C keys of a mount, never empty: the first encrypts new objects, the others only
/// read objects written before a rotation. `Debug` shows how many, never a key.
#[derive(Clone, PartialEq, Eq)]
pub struct SseCKeys(Vec<SseCKey>);

impl fmt::Debug for SseCKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SseCKeys({} key(s), <redacted>)", self.0.len())
    }
}

impl From<SseCKey> for SseCKeys {
    fn from(k: SseCKey) -> Self {
        SseCKeys(vec![k])
    }
}

impl SseCKeys {
    /// `None` for an empty list.
    pub fn new(keys: Vec<SseCKey>) -> Option<Self> {
        (!keys.is_empty()).then_some(SseCKeys(keys))
    }

    /// Reads a key file: exactly 32 raw bytes (one key), or text with one key a line, as
    /// s3fs's and cosfs's key files hold them: a line of 32 characters is the key itself, a
    /// longer one the base64 of 32 bytes; empty lines and lines starting with `#` are skipped.
    /// The first key is the one new objects get. Errors never quote the contents.
    pub fn from_file_contents(data: &[u8]) -> Result<Self, String> {
        if data.len() == 32 {
            return Ok(SseCKey::from_file_contents(data)?.into());
        }
        let text = std::str::from_utf8(data).map_err(|_| {
            format!(
                "SSE-C keys must be 32 raw bytes, or one key a line (32 characters, or the base64 of 32 bytes); got {} bytes that are neither",
                data.len()
            )
        })?;
        let mut keys = Vec::new();
        for (n, line) in text.lines().map(str::trim).enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(
                SseCKey::from_file_contents(line.as_bytes())
                    .map_err(|e| format!("line {}: {e}", n + 1))?,
            );
        }
        SseCKeys::new(keys).ok_or_else(|| "the SSE-C key file holds no key".to_string())
    }

    /// The key new objects are encrypted with.
    pub fn write_key(&self) -> &SseCKey {
        &self.0[0]
    }

    /// Key `i` (0 is the write key).
    pub fn get(&self, i: usize) -> &SseCKey {
        &self.0[i.min(self.0.len() - 1)]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The mount's server-side encryption setting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Sse {
    #[default]
    None,
    /// SSE-COS: `x-cos-server-side-encryption: AES256`.
    Cos,
    /// SSE-KMS with an optional CMK id and an optional base64 JSON context.
    Kms {
        key_id: Option<String>,
        context: Option<String>,
    },
    /// SSE-C with the customer's keys.
    Customer(SseCKeys),
}

/// The request kinds whose SSE headers differ (§6 table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseRequest {
    Put,
    InitiateMultipart,
    UploadPart,
    Get,
    Head,
    /// PUT Object - Copy: the destination headers and, for SSE-C, the source trio.
    Copy,
    /// Upload Part - Copy: for SSE-C the destination trio and the source trio.
    UploadPartCopy,
    /// Complete, Abort, List*, Delete: nothing.
    Other,
}

pub const SSE: &str = "x-cos-server-side-encryption";
pub const SSE_KMS_KEY_ID: &str = "x-cos-server-side-encryption-cos-kms-key-id";
pub const SSE_CONTEXT: &str = "x-cos-server-side-encryption-context";
pub const SSE_C_ALGORITHM: &str = "x-cos-server-side-encryption-customer-algorithm";
pub const SSE_C_KEY: &str = "x-cos-server-side-encryption-customer-key";
pub const SSE_C_KEY_MD5: &str = "x-cos-server-side-encryption-customer-key-MD5";
pub const COPY_SOURCE_SSE_C_ALGORITHM: &str =
    "x-cos-copy-source-server-side-encryption-customer-algorithm";
pub const COPY_SOURCE_SSE_C_KEY: &str = "x-cos-copy-source-server-side-encryption-customer-key";
pub const COPY_SOURCE_SSE_C_KEY_MD5: &str =
    "x-cos-copy-source-server-side-encryption-customer-key-MD5";

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn secret_value(s: &Secret) -> HeaderValue {
    let mut v = value(s.expose());
    v.set_sensitive(true);
    v
}

impl Sse {
    /// How many keys an object to read may have been written with (SSE-C rotation; 1 else).
    pub fn source_keys(&self) -> usize {
        match self {
            Sse::Customer(keys) => keys.len(),
            _ => 1,
        }
    }

    /// Headers to add to a request of `kind`, reading an object with the first key.
    pub fn headers(&self, kind: SseRequest) -> Vec<(&'static str, HeaderValue)> {
        self.headers_reading(kind, 0)
    }

    /// Headers to add to a request of `kind` whose source object (read by GET, HEAD, or as
    /// the source of a copy) is to be opened with SSE-C key `source`; what is written always
    /// gets the first key.
    pub fn headers_reading(
        &self,
        kind: SseRequest,
        source: usize,
    ) -> Vec<(&'static str, HeaderValue)> {
        use SseRequest::*;
        let writes_object = matches!(kind, Put | InitiateMultipart | Copy);
        let mut out = Vec::new();
        match self {
            Sse::None => {}
            Sse::Cos => {
                if writes_object {
                    out.push((SSE, HeaderValue::from_static("AES256")));
                }
            }
            Sse::Kms { key_id, context } => {
                if writes_object {
                    out.push((SSE, HeaderValue::from_static("cos/kms")));
                    if let Some(id) = key_id {
                        out.push((SSE_KMS_KEY_ID, value(id)));
                    }
                    if let Some(ctx) = context {
                        out.push((SSE_CONTEXT, value(ctx)));
                    }
                }
            }
            Sse::Customer(keys) => {
                let key = match kind {
                    Get | Head => keys.get(source),
                    _ => keys.write_key(),
                };
                if matches!(
                    kind,
                    Put | InitiateMultipart | UploadPart | Get | Head | Copy | UploadPartCopy
                ) {
                    out.push((SSE_C_ALGORITHM, HeaderValue::from_static("AES256")));
                    out.push((SSE_C_KEY, secret_value(key.key_b64())));
                    out.push((SSE_C_KEY_MD5, value(key.md5_b64())));
                }
                if matches!(kind, Copy | UploadPartCopy) {
                    let src = keys.get(source);
                    out.push((
                        COPY_SOURCE_SSE_C_ALGORITHM,
                        HeaderValue::from_static("AES256"),
                    ));
                    out.push((COPY_SOURCE_SSE_C_KEY, secret_value(src.key_b64())));
                    out.push((COPY_SOURCE_SSE_C_KEY_MD5, value(src.md5_b64())));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_hold_one_key_or_one_a_line_and_copies_read_with_the_source_key() {
        let one = SseCKeys::from_file_contents(&[9u8; 32]).unwrap();
        assert_eq!(one.len(), 1);
        let text = format!(
            "# rotated 2026-12\n{}\n\n0123456789abcdef0123456789abcdef\n",
            B64.encode([1u8; 32])
        );
        let keys = SseCKeys::from_file_contents(text.as_bytes()).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.write_key(), &SseCKey::from_bytes(&[1; 32]));
        assert_eq!(keys.get(1).md5_b64(), "hRasmdxgYDKV3nvbahU1MA==");
        assert!(SseCKeys::from_file_contents(b"# nothing\n").is_err());
        assert!(SseCKeys::from_file_contents(b"too short\n").is_err());
        assert!(!format!("{keys:?}").contains("MDEy"));
        let sse = Sse::Customer(keys);
        let md5 = |h: &[(&str, HeaderValue)], name| {
            h.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_str().unwrap().to_string())
                .unwrap()
        };
        let read_old = sse.headers_reading(SseRequest::Get, 1);
        assert_eq!(md5(&read_old, SSE_C_KEY_MD5), "hRasmdxgYDKV3nvbahU1MA==");
        let copy = sse.headers_reading(SseRequest::Copy, 1);
        assert_eq!(
            md5(&copy, COPY_SOURCE_SSE_C_KEY_MD5),
            "hRasmdxgYDKV3nvbahU1MA=="
        );
        assert_eq!(
            md5(&copy, SSE_C_KEY_MD5),
            SseCKey::from_bytes(&[1; 32]).md5_b64(),
            "what is written gets the first key"
        );
    }

    fn names(sse: &Sse, kind: SseRequest) -> Vec<&'static str> {
        sse.headers(kind).into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn documented_key_and_md5() {
        let k = SseCKey::from_bytes(b"0123456789ABCDEF0123456789ABCDEF");
        assert_eq!(
            k.key_b64().expose(),
            "MDEyMzQ1Njc4OUFCQ0RFRjAxMjM0NTY3ODlBQkNERUY="
        );
        assert_eq!(k.md5_b64(), "U5L61r7jcwdNvT7frmUG8g==");
        let from_b64 =
            SseCKey::from_file_contents(b"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").unwrap();
        assert_eq!(from_b64.md5_b64(), "hRasmdxgYDKV3nvbahU1MA==");
        assert!(SseCKey::from_file_contents(b"short").is_err());
        assert!(SseCKey::from_file_contents(b"bm90IDMyIGJ5dGVz").is_err());
        assert!(!format!("{k:?}").contains("MDEy"));
    }

    #[test]
    fn never_sse_on_get_or_head() {
        for sse in [
            Sse::Cos,
            Sse::Kms {
                key_id: Some("k".into()),
                context: None,
            },
        ] {
            assert!(names(&sse, SseRequest::Get).is_empty());
            assert!(names(&sse, SseRequest::Head).is_empty());
            assert!(names(&sse, SseRequest::UploadPart).is_empty());
            assert_eq!(names(&sse, SseRequest::Put)[0], SSE);
            assert_eq!(names(&sse, SseRequest::Copy)[0], SSE);
        }
    }

    #[test]
    fn sse_c_everywhere_the_bytes_are() {
        let sse = Sse::Customer(SseCKey::from_bytes(&[7; 32]).into());
        for kind in [
            SseRequest::Put,
            SseRequest::Get,
            SseRequest::Head,
            SseRequest::UploadPart,
            SseRequest::InitiateMultipart,
        ] {
            assert_eq!(names(&sse, kind).len(), 3, "{kind:?}");
        }
        assert_eq!(names(&sse, SseRequest::Copy).len(), 6);
        assert_eq!(names(&sse, SseRequest::UploadPartCopy).len(), 6);
        assert!(names(&sse, SseRequest::Other).is_empty());
        let hdrs = sse.headers(SseRequest::Get);
        assert!(
            hdrs.iter()
                .find(|(n, _)| *n == SSE_C_KEY)
                .unwrap()
                .1
                .is_sensitive()
        );
    }
}
