//! AWS Signature Version 4, checked byte for byte against botocore (AWS's official Python SDK
//! core): for each request of tests/data/sigv4-vectors.json (made by make_sigv4_vectors.py
//! with the time frozen), the canonical request, the string to sign and the Authorization
//! header must be exactly botocore's.

use cosmount::cos::sigv4::{self, Scope, SigV4Request, UNSIGNED_PAYLOAD};

#[derive(serde::Deserialize)]
struct Vectors {
    access_key: String,
    secret_key: String,
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    method: String,
    url: String,
    region: String,
    headers: std::collections::BTreeMap<String, String>,
    body_sha256: String,
    unsigned_payload: bool,
    session_token: Option<String>,
    amz_date: String,
    content_sha256: String,
    canonical_request: String,
    string_to_sign: String,
    authorization: String,
}

#[test]
fn every_botocore_vector_matches() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sigv4-vectors.json"
    ))
    .unwrap();
    let v: Vectors = serde_json::from_str(&text).unwrap();
    assert!(v.cases.len() >= 10);
    for c in &v.cases {
        let url = url::Url::parse(&c.url).unwrap();
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap()),
            None => url.host_str().unwrap().to_string(),
        };
        let params: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let payload = if c.unsigned_payload {
            UNSIGNED_PAYLOAD.to_string()
        } else {
            c.body_sha256.clone()
        };
        assert_eq!(payload, c.content_sha256, "{}", c.name);
        let mut headers: Vec<(String, String)> = c
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        headers.push(("Host".into(), host));
        headers.push(("X-Amz-Date".into(), c.amz_date.clone()));
        headers.push(("X-Amz-Content-SHA256".into(), payload.clone()));
        if let Some(t) = &c.session_token {
            headers.push(("X-Amz-Security-Token".into(), t.clone()));
        }
        let s = sigv4::sign(
            &v.secret_key,
            &SigV4Request {
                method: &c.method,
                path: url.path(),
                params: &params,
                headers: &headers,
                payload_hash: &payload,
            },
            &Scope {
                amz_date: &c.amz_date,
                region: &c.region,
                service: "s3",
            },
        );
        assert_eq!(s.canonical_request, c.canonical_request, "{}", c.name);
        assert_eq!(s.string_to_sign, c.string_to_sign, "{}", c.name);
        assert_eq!(
            s.authorization(&v.access_key),
            c.authorization,
            "{}",
            c.name
        );
    }
}
