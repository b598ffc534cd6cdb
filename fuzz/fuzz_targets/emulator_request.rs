//! The emulator's whole request handling (hyper's HTTP/1.1 parsing, routing, authentication,
//! every operation) on request bytes from the fuzzer, sent over TCP to one emulator started
//! once per process.
//!
//! Input: the first byte chooses how the rest is sent.
//! - bit 0 clear: the bytes go to the socket as they are (signature checks, parsing errors);
//! - bit 0 set: the bytes are a request template that the harness signs like a client would,
//!   so that the operations behind authentication are reached too. `@UPLOAD@` is replaced by
//!   the id of a fresh multipart upload of key `mp` (an upload id cannot be guessed); an
//!   `Authorization` header is added after the request line, signing `host` (a `Host` header
//!   is added when there is none) and, when bit 1 is set, every other header of the template;
//!   bit 2 adds a `Content-Length` of the body when the template has none.
//!
//! Properties:
//! - the emulator never panics (a panic on any thread aborts the fuzzer: libfuzzer-sys'
//!   panic hook), never takes more than 10 s to answer a complete request, never answers
//!   500 (no faults are configured, so an InternalError is a bug), and what it answers is an
//!   HTTP/1.x response;
//! - every 32 inputs, and at the first input, a well-formed signed request from the real client
//!   (HEAD Bucket, plus a HEAD/PUT of the copy source `src`) still succeeds.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cosmount::cos::auth::{self, Credentials, KeyTime, SignRequest};
use cosmount::cos::retry::RetryPolicy;
use cosmount::cos::{
    Body, ClientConfig, CosClient, Endpoint, ObjectClient, ObjectMetadata, PutObject,
};
use cosmount::emulator::{Emulator, EmulatorConfig};
use libfuzzer_sys::fuzz_target;

const CHECK_EVERY: u64 = 32;
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

struct Harness {
    emulator: Emulator,
    config: EmulatorConfig,
    client: CosClient,
    rt: tokio::runtime::Runtime,
    inputs: AtomicU64,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        // libFuzzer's main is not Rust's: writing to a socket the emulator closed would kill
        // the process with SIGPIPE instead of failing the write.
        // SAFETY: only sets the disposition of SIGPIPE to SIG_IGN.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        let dir = tempfile::Builder::new()
            .prefix("cosmount-fuzz-emulator-")
            .tempdir()
            .expect("temporary directory");
        let config = EmulatorConfig {
            data_dir: dir.path().join("data"),
            ..Default::default()
        };
        let emulator = Emulator::start_background(config.clone()).expect("emulator starts");
        let client = CosClient::new(ClientConfig {
            bucket: config.buckets[0].clone(),
            endpoint: Endpoint::Url(emulator.endpoint().parse().expect("endpoint URL")),
            credentials: Credentials::new(
                config.secret_id.clone(),
                config.secret_key.expose().to_string(),
            ),
            retry: RetryPolicy {
                max_attempts: 2,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
            },
            read_timeout: Duration::from_secs(10),
            ..Default::default()
        })
        .expect("client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Harness {
            emulator,
            config,
            client,
            rt,
            inputs: AtomicU64::new(0),
            _dir: dir,
        }
    })
}

/// The emulator still serves a client: HEAD Bucket works (after PUT Bucket, if an input
/// deleted the bucket, as DELETE Bucket of an emptied bucket may), and the copy source exists.
fn health_check(h: &Harness) {
    h.rt.block_on(async {
        if let Err(e) = h.client.head_bucket().await {
            let made_again = e.status() == Some(404) && h.client.put_bucket().await.is_ok();
            if !made_again {
                panic!("the emulator no longer answers HEAD Bucket: {e}");
            }
        }
        if h.client.head_object("src").await.is_err() {
            let body: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
            if let Err(e) = h
                .client
                .put_object(PutObject::new("src", Body::Bytes(body.into())))
                .await
            {
                panic!("the emulator no longer accepts PUT: {e}");
            }
        }
    });
}

fn new_upload(h: &Harness) -> String {
    h.rt.block_on(
        h.client
            .create_multipart_upload("mp", &ObjectMetadata::default()),
    )
    .unwrap_or_else(|e| panic!("the emulator no longer initiates uploads: {e}"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn replace_all(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(i) = find(rest, from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Signs a request template (see the module comment). `None` when it has no request line
/// or its path is not UTF-8 once decoded; it is then sent as it is.
fn sign_template(h: &Harness, flags: u8, template: &[u8]) -> Option<Vec<u8>> {
    let (head, body) = match find(template, b"\r\n\r\n") {
        Some(i) => (&template[..i], &template[i + 4..]),
        None => (template, &b""[..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?;
    let mut words = request_line.split(' ');
    let (method, target) = (words.next()?, words.next()?);
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let path = auth::decode_path(raw_path)?;
    let params = auth::decode_query(raw_query);
    let mut headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    let mut extra = String::new();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        let host = h.emulator.addr().to_string();
        extra.push_str(&format!("Host: {host}\r\n"));
        headers.push(("Host".into(), host));
    }
    if flags & 4 != 0
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        extra.push_str(&format!("Content-Length: {}\r\n", body.len()));
        headers.push(("Content-Length".into(), body.len().to_string()));
    }
    let signed: Vec<(String, String)> = if flags & 2 != 0 {
        headers
    } else {
        headers
            .into_iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
            .collect()
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let sig = auth::sign(
        h.config.secret_key.expose(),
        &SignRequest {
            method,
            path: &path,
            params: &params,
            headers: &signed,
        },
        KeyTime::around(now),
    );
    let line_end = find(template, b"\r\n").unwrap_or(template.len());
    let mut out = Vec::with_capacity(template.len() + 512);
    out.extend_from_slice(&template[..line_end]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(
        format!(
            "Authorization: {}\r\n",
            sig.authorization(&h.config.secret_id)
        )
        .as_bytes(),
    );
    out.extend_from_slice(extra.as_bytes());
    if line_end + 2 <= template.len() {
        out.extend_from_slice(&template[line_end + 2..]);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    Some(out)
}

/// Sends `bytes`, closes the write side, returns everything the emulator answers.
fn exchange(h: &Harness, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(h.emulator.addr()).expect("the emulator accepts connections");
    s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    // The emulator may answer (and close) before it read everything: write errors are fine.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "no answer (or no end of it) within {:?}; got {:?}",
                    started.elapsed(),
                    String::from_utf8_lossy(&out[..out.len().min(300)])
                );
            }
            // Reset by the emulator: it closed with unread input. The answer is what came.
            Err(_) => break,
        }
    }
    out
}

/// Checks the (first) response in `answer`.
fn check_answer(request: &[u8], answer: &[u8]) {
    if answer.is_empty() {
        return;
    }
    let head = String::from_utf8_lossy(&answer[..answer.len().min(64)]);
    assert!(
        head.starts_with("HTTP/1.1 ") || head.starts_with("HTTP/1.0 "),
        "not an HTTP response: {head:?}"
    );
    assert!(
        !head[9..].starts_with("500"),
        "an InternalError for {:?}:\n{}",
        String::from_utf8_lossy(request),
        String::from_utf8_lossy(answer)
    );
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let n = h.inputs.fetch_add(1, Ordering::Relaxed);
    if n.is_multiple_of(CHECK_EVERY) {
        health_check(h);
    }
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let request = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let rest = if find(rest, b"@UPLOAD@").is_some() {
            replace_all(rest, b"@UPLOAD@", new_upload(h).as_bytes())
        } else {
            rest.to_vec()
        };
        sign_template(h, mode, &rest).unwrap_or(rest)
    };
    let answer = exchange(h, &request);
    check_answer(&request, &answer);
});
