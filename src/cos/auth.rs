//! COS request signing, `q-sign-algorithm=sha1` (cos-protocol.md §2).
//!
//! Everything here is a pure function of its inputs: the time is an argument, nothing reads a
//! clock, nothing logs. The client signs with it and the emulator verifies with it, which is why
//! the vectors produced by Tencent's own SDK (`tests/data/cos-sign-vectors.json`) are checked byte
//! for byte: a symmetric bug would pass client-against-emulator tests but not those.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::{Digest, Sha1};

/// Everything but `A-Z a-z 0-9 - _ . ~` is percent-encoded, upper-case hex (§2.2).
const SIGN_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// UrlEncode as the signature defines it (§2.2): UTF-8, then every byte outside the unreserved
/// set as `%XX`; space is `%20`, never `+`.
pub fn sign_encode(s: &str) -> String {
    utf8_percent_encode(s, SIGN_ENCODE).to_string()
}

/// A secret string: its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it goes on the wire or into a MAC.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A SecretId / SecretKey pair, optionally temporary (with a session token).
#[derive(Clone)]
pub struct Credentials {
    pub secret_id: String,
    pub secret_key: Secret,
    pub session_token: Option<Secret>,
}

impl Credentials {
    pub fn new(secret_id: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Credentials {
            secret_id: secret_id.into(),
            secret_key: Secret::new(secret_key),
            session_token: None,
        }
    }

    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(Secret::new(token));
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The validity window of a signature: `q-sign-time` / `q-key-time`, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTime {
    pub start: u64,
    pub end: u64,
}

impl KeyTime {
    /// The window used for every request this crate signs: it starts a minute before `now`, so
    /// a server whose clock is slightly behind ours still accepts it (the Python SDK does the
    /// same, §2.4), and lasts an hour, far longer than any single request with its retries.
    pub fn around(now: u64) -> Self {
        KeyTime {
            start: now.saturating_sub(60),
            end: now + 3600,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.split_once(';')?;
        Some(KeyTime {
            start: a.parse().ok()?,
            end: b.parse().ok()?,
        })
    }
}

impl fmt::Display for KeyTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};{}", self.start, self.end)
    }
}

/// What is signed about one request. Names are as sent (any case); values are decoded.
pub struct SignRequest<'a> {
    /// HTTP method, any case.
    pub method: &'a str,
    /// The percent-decoded path, starting with `/` (§2.1 step 5, rule 1).
    pub path: &'a str,
    /// Query parameters to sign, decoded.
    pub params: &'a [(String, String)],
    /// Headers to sign.
    pub headers: &'a [(String, String)],
}

/// Every intermediate value of a signature, so tests can compare each against the vectors.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    pub key_time: KeyTime,
    pub sign_key: String,
    pub http_string: String,
    pub string_to_sign: String,
    pub signature: String,
    pub header_list: String,
    pub param_list: String,
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signature and the key derived from the SecretKey are credentials for an hour.
        f.debug_struct("Signature")
            .field("key_time", &self.key_time)
            .field("header_list", &self.header_list)
            .field("param_list", &self.param_list)
            .finish_non_exhaustive()
    }
}

impl Signature {
    /// The `Authorization` header value (§2.1 step 8).
    pub fn authorization(&self, secret_id: &str) -> String {
        format!(
            "q-sign-algorithm=sha1&q-ak={}&q-sign-time={}&q-key-time={}&q-header-list={}&q-url-param-list={}&q-signature={}",
            secret_id,
            self.key_time,
            self.key_time,
            self.header_list,
            self.param_list,
            self.signature
        )
    }
}

fn hmac_sha1_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// `k1'=v1'&k2'=v2'` and `k1';k2'` over pairs: names lower-cased after encoding, values encoded,
/// sorted by encoded name then value (§2.1 steps 3-4).
fn canonical_pairs(pairs: &[(String, String)]) -> (String, String) {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (sign_encode(k).to_lowercase(), sign_encode(v)))
        .collect();
    encoded.sort();
    let joined = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let list = encoded
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (joined, list)
}

/// Signs a request (§2.1) with `secret_key` for the window `key_time`.
pub fn sign(secret_key: &str, req: &SignRequest<'_>, key_time: KeyTime) -> Signature {
    sign_with_times(secret_key, req, key_time, key_time)
}

/// Signs with distinct `q-key-time` (for SignKey) and `q-sign-time` (in StringToSign); real
/// clients always send the same value for both, but the emulator verifies what it was given.
fn sign_with_times(
    secret_key: &str,
    req: &SignRequest<'_>,
    key_time: KeyTime,
    sign_time: KeyTime,
) -> Signature {
    let sign_key = hmac_sha1_hex(secret_key.as_bytes(), key_time.to_string().as_bytes());
    let (http_params, param_list) = canonical_pairs(req.params);
    let (http_headers, header_list) = canonical_pairs(req.headers);
    let http_string = format!(
        "{}\n{}\n{}\n{}\n",
        req.method.to_lowercase(),
        req.path,
        http_params,
        http_headers
    );
    let string_to_sign = format!(
        "sha1\n{}\n{}\n",
        sign_time,
        hex::encode(Sha1::digest(http_string.as_bytes()))
    );
    let signature = hmac_sha1_hex(sign_key.as_bytes(), string_to_sign.as_bytes());
    Signature {
        key_time,
        sign_key,
        http_string,
        string_to_sign,
        signature,
        header_list,
        param_list,
    }
}

/// The seven fields of an `Authorization` header or of query-string auth (§2.5).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthFields {
    pub secret_id: String,
    pub sign_time: KeyTime,
    pub key_time: KeyTime,
    /// Encoded, lower-cased names as listed by the client.
    pub header_list: Vec<String>,
    pub param_list: Vec<String>,
    pub signature: String,
}

impl fmt::Debug for AuthFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFields")
            .field("secret_id", &self.secret_id)
            .field("key_time", &self.key_time)
            .field("header_list", &self.header_list)
            .field("param_list", &self.param_list)
            .finish_non_exhaustive()
    }
}

/// Why an `Authorization` value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedAuth(pub &'static str);

impl AuthFields {
    /// Parses `q-sign-algorithm=sha1&q-ak=…` (§2.6 step 2). `pairs` are the `&`-separated
    /// fields already split at their first `=` and decoded.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, MalformedAuth> {
        let (mut alg, mut ak, mut st, mut kt, mut hl, mut pl, mut sig) =
            (None, None, None, None, None, None, None);
        for (k, v) in pairs {
            match k {
                "q-sign-algorithm" => alg = Some(v),
                "q-ak" => ak = Some(v),
                "q-sign-time" => st = Some(v),
                "q-key-time" => kt = Some(v),
                "q-header-list" => hl = Some(v),
                "q-url-param-list" => pl = Some(v),
                "q-signature" => sig = Some(v),
                _ => {}
            }
        }
        if alg != Some("sha1") {
            return Err(MalformedAuth("q-sign-algorithm must be sha1"));
        }
        let list = |s: &str| -> Vec<String> {
            s.split(';')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        };
        let signature = sig.ok_or(MalformedAuth("q-signature missing"))?;
        if signature.len() != 40 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MalformedAuth("q-signature is not 40 hex digits"));
        }
        Ok(AuthFields {
            secret_id: ak
                .filter(|s| !s.is_empty())
                .ok_or(MalformedAuth("q-ak missing"))?
                .to_string(),
            sign_time: st
                .and_then(KeyTime::parse)
                .ok_or(MalformedAuth("q-sign-time malformed"))?,
            key_time: kt
                .and_then(KeyTime::parse)
                .ok_or(MalformedAuth("q-key-time malformed"))?,
            header_list: list(hl.ok_or(MalformedAuth("q-header-list missing"))?),
            param_list: list(pl.ok_or(MalformedAuth("q-url-param-list missing"))?),
            signature: signature.to_ascii_lowercase(),
        })
    }

    /// Parses an `Authorization` header value.
    pub fn parse_header(value: &str) -> Result<Self, MalformedAuth> {
        Self::from_pairs(
            value
                .trim()
                .split('&')
                .map(|p| p.split_once('=').unwrap_or((p, ""))),
        )
    }
}

/// Outcome of checking a signature against what the server received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// A header or parameter named in the lists is absent from the request.
    MissingSigned,
    Mismatch,
}

/// Verifies `auth` for a request as received (§2.6 steps 5-8): `params` are the form-decoded
/// query parameters (auth parameters removed), `headers` every received header. Only what the
/// client listed is used. When `host` is signed and the received Host has a port, a mismatch is
/// retried once with the port removed, because the Python SDK signs the host without it (rule 5).
pub fn verify(
    secret_key: &str,
    auth: &AuthFields,
    method: &str,
    path: &str,
    params: &[(String, String)],
    headers: &[(String, String)],
) -> Verdict {
    fn select(list: &[String], pairs: &[(String, String)]) -> Option<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(list.len());
        for (i, name) in list.iter().enumerate() {
            // A name signed twice (`a=1&a=2` lists `a;a`) selects its pairs once.
            if list[..i].contains(name) {
                continue;
            }
            let found = pairs
                .iter()
                .filter(|(k, _)| sign_encode(k).to_lowercase() == *name)
                .collect::<Vec<_>>();
            if found.is_empty() {
                return None;
            }
            out.extend(found.into_iter().cloned());
        }
        Some(out)
    }
    let Some(sel_params) = select(&auth.param_list, params) else {
        return Verdict::MissingSigned;
    };
    let Some(mut sel_headers) = select(&auth.header_list, headers) else {
        return Verdict::MissingSigned;
    };
    let check = |hdrs: &[(String, String)]| {
        let req = SignRequest {
            method,
            path,
            params: &sel_params,
            headers: hdrs,
        };
        let sig = sign_with_times(secret_key, &req, auth.key_time, auth.sign_time);
        constant_time_eq(sig.signature.as_bytes(), auth.signature.as_bytes())
    };
    if check(&sel_headers) {
        return Verdict::Valid;
    }
    let mut stripped = false;
    for (k, v) in sel_headers.iter_mut() {
        if k.eq_ignore_ascii_case("host")
            && let Some((h, port)) = v.rsplit_once(':')
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
        {
            *v = h.to_string();
            stripped = true;
        }
    }
    if stripped && check(&sel_headers) {
        return Verdict::Valid;
    }
    Verdict::Mismatch
}

/// Percent-decodes a request path to the UTF-8 string that is signed (rule 1): `+` stays a
/// plus, `%2F` becomes `/`, nothing is normalised. `None` when the bytes are not UTF-8.
pub fn decode_path(raw: &str) -> Option<String> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Form-decodes a raw query string (rule 4: `+` is a space, `%XX` a byte) into pairs in order;
/// a parameter without `=` has the value `""` (`?uploads` is `uploads=`).
pub fn decode_query(raw: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned()
    }
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_the_documented_set() {
        assert_eq!(sign_encode("a b/c"), "a%20b%2Fc");
        assert_eq!(sign_encode("-_.~AZaz09"), "-_.~AZaz09");
        assert_eq!(sign_encode("!'()*+"), "%21%27%28%29%2A%2B");
        assert_eq!(sign_encode("中"), "%E4%B8%AD");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = Credentials::new("AKIDvisible", "SUPERSECRETKEY").with_session_token("TOKEN123");
        let s = format!("{c:?} {:?}", c.secret_key);
        assert!(s.contains("AKIDvisible"));
        assert!(!s.contains("SUPERSECRETKEY"));
        assert!(!s.contains("TOKEN123"));
        let req = SignRequest {
            method: "GET",
            path: "/",
            params: &[],
            headers: &[],
        };
        let sig = sign("SUPERSECRETKEY", &req, KeyTime::around(1));
        let dbg = format!("{sig:?}");
        assert!(!dbg.contains(&sig.signature));
        assert!(!dbg.contains(&sig.sign_key));
    }

    #[test]
    fn auth_header_round_trips() {
        let req = SignRequest {
            method: "PUT",
            path: "/a b",
            params: &[("partNumber".into(), "1".into())],
            headers: &[("Host".into(), "b-1.cos.r.myqcloud.com:8080".into())],
        };
        let sig = sign("key", &req, KeyTime::around(100));
        let auth = AuthFields::parse_header(&sig.authorization("AKID")).unwrap();
        assert_eq!(auth.secret_id, "AKID");
        let hdrs = vec![(
            "host".to_string(),
            "b-1.cos.r.myqcloud.com:8080".to_string(),
        )];
        assert_eq!(
            verify("key", &auth, "PUT", "/a b", req.params, &hdrs),
            Verdict::Valid
        );
        assert_eq!(
            verify("other", &auth, "PUT", "/a b", req.params, &hdrs),
            Verdict::Mismatch
        );
        assert_eq!(
            verify("key", &auth, "PUT", "/a b", &[], &hdrs),
            Verdict::MissingSigned
        );
    }

    #[test]
    fn repeated_names_verify() {
        // Found by fuzz/fuzz_targets/sign_verify.rs: a parameter or header that occurs twice
        // is listed twice (`a;a`), and each listing selected both pairs again, so a request
        // signed by `sign` itself was a Mismatch.
        let params = vec![("a".to_string(), "1".to_string()), ("a".into(), "2".into())];
        let headers = vec![
            ("X-Cos-Meta-K".to_string(), "v".to_string()),
            ("x-cos-meta-k".into(), "w".into()),
        ];
        let req = SignRequest {
            method: "GET",
            path: "/",
            params: &params,
            headers: &headers,
        };
        let sig = sign("key", &req, KeyTime::around(7));
        assert_eq!(sig.param_list, "a;a");
        let auth = AuthFields::parse_header(&sig.authorization("id")).unwrap();
        assert_eq!(
            verify("key", &auth, "GET", "/", &params, &headers),
            Verdict::Valid
        );
        assert_eq!(
            verify("key", &auth, "GET", "/", &params[..1], &headers),
            Verdict::Mismatch
        );
    }

    #[test]
    fn port_is_stripped_on_retry() {
        // The Python SDK signs `host=127.0.0.1` while sending `Host: 127.0.0.1:PORT`.
        let hdrs_signed = vec![("host".to_string(), "127.0.0.1".to_string())];
        let req = SignRequest {
            method: "GET",
            path: "/x",
            params: &[],
            headers: &hdrs_signed,
        };
        let sig = sign("k", &req, KeyTime::around(5));
        let auth = AuthFields::parse_header(&sig.authorization("id")).unwrap();
        let received = vec![("Host".to_string(), "127.0.0.1:35117".to_string())];
        assert_eq!(
            verify("k", &auth, "GET", "/x", &[], &received),
            Verdict::Valid
        );
    }

    #[test]
    fn malformed_authorization_is_rejected() {
        assert!(AuthFields::parse_header("").is_err());
        assert!(AuthFields::parse_header("q-sign-algorithm=md5").is_err());
        assert!(
            AuthFields::parse_header(
                "q-sign-algorithm=sha1&q-ak=a&q-sign-time=1;2&q-key-time=1;2&q-header-list=&q-url-param-list=&q-signature=zz"
            )
            .is_err()
        );
    }
}
