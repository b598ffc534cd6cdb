//! Request signing and verification (src/cos/auth.rs).
//!
//! Properties:
//! - `AuthFields::parse_header`, `decode_path`, `decode_query` and `sign_encode` take any text;
//!   `sign_encode` leaves only unreserved characters and `%XX`, and `decode_path` /
//!   `decode_query` undo it;
//! - for any method, path, parameters, headers, key and validity window built from fuzz data,
//!   the `Authorization` header of `sign(...)` parses back to the same fields, and `verify` with
//!   the same key on the same request is `Valid`; with one byte of the key changed it is not.
//!
//! Parameter and header names are non-empty: an empty name signs as an empty entry of
//! `q-url-param-list`, which cannot be told from "no parameters" (`a=1&=x` has no name to
//! list), so such a request has no verifiable signature under the scheme itself.
#![no_main]

use cosmount::cos::auth::{
    self, AuthFields, KeyTime, SignRequest, Verdict, decode_path, decode_query, sign_encode,
};
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;

fn text_properties(text: &str) {
    let _ = AuthFields::parse_header(text);
    let _ = decode_path(text);
    let _ = decode_query(text);
    let enc = sign_encode(text);
    assert!(
        enc.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)),
        "sign_encode({text:?}) = {enc:?}"
    );
    assert_eq!(
        decode_path(&enc).as_deref(),
        Some(text),
        "decode_path(sign_encode(s))"
    );
}

/// A short string, often from a small alphabet so that names collide and case differs.
fn word(u: &mut Unstructured) -> ArbResult<String> {
    if u.ratio(1u8, 2)? {
        let n = u.int_in_range(0usize..=4)?;
        (0..n)
            .map(|_| Ok(*u.choose(&['a', 'A', 'b', '-', ' ', '=', '&', ';', '%', '+', 'é'])?))
            .collect()
    } else {
        u.arbitrary()
    }
}

fn pairs(u: &mut Unstructured) -> ArbResult<Vec<(String, String)>> {
    let n = u.int_in_range(0usize..=5)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let k = word(u)?;
        if k.is_empty() {
            continue;
        }
        out.push((k, word(u)?));
    }
    Ok(out)
}

fn structured(u: &mut Unstructured) -> ArbResult<()> {
    let method: String = if u.ratio(3u8, 4)? {
        u.choose(&["GET", "PUT", "head", "Post", "DELETE"])?
            .to_string()
    } else {
        u.arbitrary()?
    };
    let path: String = format!("/{}", u.arbitrary::<String>()?);
    let params = pairs(u)?;
    let headers = pairs(u)?;
    let key: String = u.arbitrary()?;
    let id: String = u.arbitrary()?;
    let id = id.replace('&', "");
    let id = if id.is_empty() {
        "AKID".to_string()
    } else {
        id
    };
    let (a, b): (u64, u64) = u.arbitrary()?;
    let key_time = KeyTime { start: a, end: b };

    // The encodings round-trip.
    let query = params
        .iter()
        .map(|(k, v)| format!("{}={}", sign_encode(k), sign_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(decode_query(&query), params, "decode_query({query:?})");

    let req = SignRequest {
        method: &method,
        path: &path,
        params: &params,
        headers: &headers,
    };
    let sig = auth::sign(&key, &req, key_time);
    let header = sig.authorization(&id);
    let fields = AuthFields::parse_header(&header)
        .unwrap_or_else(|e| panic!("our own Authorization {header:?} does not parse: {e:?}"));
    assert_eq!(fields.secret_id, id, "q-ak");
    assert_eq!(fields.key_time, key_time);
    assert_eq!(fields.sign_time, key_time);
    assert_eq!(fields.signature, sig.signature);
    let verdict = auth::verify(&key, &fields, &method, &path, &params, &headers);
    assert_eq!(
        verdict,
        Verdict::Valid,
        "{method} {path:?} params {params:?} headers {headers:?}: {sig:?}"
    );

    // One byte of the key changed: bit 0 of an ASCII byte or of the last byte of a multi-byte
    // character, which keeps the key UTF-8 (the last byte of the string always qualifies).
    let mut bad = key.clone().into_bytes();
    if bad.is_empty() {
        bad.push(b'k');
    } else {
        let last_of_char =
            |b: &[u8], j: usize| b[j].is_ascii() || b.get(j + 1).is_none_or(|&n| n & 0xC0 != 0x80);
        let mut j = u.choose_index(bad.len())?;
        while !last_of_char(&bad, j) {
            j += 1;
        }
        bad[j] ^= 1;
    }
    let bad = String::from_utf8(bad).expect("still UTF-8");
    assert_ne!(bad, key);
    let verdict = auth::verify(&bad, &fields, &method, &path, &params, &headers);
    assert_ne!(verdict, Verdict::Valid, "a changed key verified");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        text_properties(&String::from_utf8_lossy(rest));
    } else {
        let _ = structured(&mut Unstructured::new(rest));
    }
});
