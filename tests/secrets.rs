//! No secret reaches a log line, an error message or a panic: a whole mount session at trace
//! level, with temporary credentials (a session token) and an SSE-C key, through retries and
//! failed commits, is searched for the SecretKey, the token, the SSE-C key (raw, base64, hex)
//! and signatures.

mod common;

use std::io::Write;

use base64::Engine;
use common::mount::Mount;
use common::{TestEmulator, pattern, sh, sh_status};
use cosmount::cos::auth::Secret;

const SECRET_KEY: &str = "TopSecretKeyDoNotLog0123456789ab";
const TOKEN: &str = "SessionTokenDoNotLog+/=abcdefgh";
const SSE_C_RAW: &[u8; 32] = b"SseCustomerKeyDoNotLog0123456789";

#[test]
fn a_trace_level_session_with_errors_and_retries_logs_no_secret() {
    let emu = TestEmulator::start_with(|c| {
        c.secret_key = Secret::new(SECRET_KEY);
        c.session_token = Some(Secret::new(TOKEN));
    });
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(SSE_C_RAW);
    std::fs::write(&key_file, &key_b64).unwrap();
    let m = Mount::start_with_env(
        &emu,
        &[
            "--sse-c-key-file",
            key_file.to_str().unwrap(),
            "--log-level",
            "trace",
            "--part-size",
            "1M",
            "--retry-max-attempts",
            "3",
        ],
        &[("RUST_LOG", "trace")],
    );
    sh(
        m.path(),
        "mkdir d && echo small > d/a && ln -s a d/link && chmod 600 d/a && mv d/a d/b && ls -lR >/dev/null && cat d/b",
    );
    std::fs::write(m.join("big"), pattern(3 << 20, 1)).unwrap();
    assert_eq!(std::fs::read(m.join("big")).unwrap(), pattern(3 << 20, 1));
    emu.emulator
        .faults()
        .set("any:503:0.3,get:reset:0.2,put_part:reset:0.2")
        .unwrap();
    let _ = sh_status(
        m.path(),
        "cp big big2; cat big2 >/dev/null; ls -l >/dev/null",
    );
    emu.emulator.faults().set("write:500:always").unwrap();
    let mut f = std::fs::File::create(m.join("doomed")).unwrap();
    f.write_all(b"will fail").unwrap();
    assert!(f.sync_all().is_err(), "a failed commit");
    drop(f);
    emu.emulator.faults().clear();
    let _ = std::fs::metadata(m.join("missing"));
    let log = m.log_text();
    assert!(log.contains("TRACE"), "trace logging was on");
    assert!(log.contains("retrying"), "retries happened");
    assert!(log.contains("commit of doomed failed"), "errors happened");
    let hex_key = hex::encode(SSE_C_RAW);
    let raw_key = String::from_utf8_lossy(SSE_C_RAW).into_owned();
    for (what, secret) in [
        ("SecretKey", SECRET_KEY),
        ("session token", TOKEN),
        ("SSE-C key (base64)", key_b64.as_str()),
        ("SSE-C key (raw)", raw_key.as_str()),
        ("SSE-C key (hex)", hex_key.as_str()),
        ("a signature", "q-signature"),
        ("an Authorization header", "q-sign-algorithm"),
    ] {
        assert!(!log.contains(secret), "the log contains {what}");
    }
    assert!(!log.contains("panicked"));
}

#[test]
fn every_type_holding_a_secret_redacts_its_debug() {
    use cosmount::cos::auth::Credentials;
    use cosmount::cos::sse::{Sse, SseCKey};
    let creds = Credentials::new("AKIDvisible", SECRET_KEY).with_session_token(TOKEN);
    let key = SseCKey::from_bytes(SSE_C_RAW);
    let client = cosmount::cos::ClientConfig {
        bucket: "b-1250000000".into(),
        credentials: creds.clone(),
        sse: Sse::Customer(key.clone().into()),
        ..Default::default()
    };
    let emulator = cosmount::emulator::EmulatorConfig {
        secret_key: Secret::new(SECRET_KEY),
        session_token: Some(Secret::new(TOKEN)),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("k");
    std::fs::write(&key_file, SSE_C_RAW).unwrap();
    let mount = cosmount::config::parse_mount(
        [
            "cosmount",
            "b-1250000000",
            "/mnt",
            "--region",
            "ap-guangzhou",
            "--credential",
            &format!("hmac:AKIDvisible:{SECRET_KEY}"),
            "--sse-c-key-file",
            key_file.to_str().unwrap(),
        ]
        .into_iter()
        .map(Into::into)
        .collect(),
    )
    .unwrap();
    let client_obj = cosmount::cos::CosClient::new(client.clone()).unwrap();
    let texts = [
        format!("{creds:?}"),
        format!("{key:?}"),
        format!("{client:?}"),
        format!("{emulator:?}"),
        format!("{mount:?}"),
        format!("{client_obj:?}"),
        format!("{:?}", Secret::new(SECRET_KEY)),
    ];
    let b64 = base64::engine::general_purpose::STANDARD.encode(SSE_C_RAW);
    for t in &texts {
        assert!(!t.contains(SECRET_KEY), "{t}");
        assert!(!t.contains(TOKEN), "{t}");
        assert!(!t.contains(&b64), "{t}");
        assert!(!t.contains(&hex::encode(SSE_C_RAW)), "{t}");
    }
    assert!(
        texts[2].contains("AKIDvisible"),
        "the SecretId is not a secret"
    );
}
