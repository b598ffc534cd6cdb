//! Shared test fixtures: an emulator with a temporary data directory, clients for it, and
//! (in `mount`) a FUSE mount of it owned by a guard that unmounts on drop.
#![allow(dead_code)]

pub mod mount;
pub mod weed;

use std::sync::Arc;
use std::time::Duration;

use cosmount::cos::auth::Credentials;
use cosmount::cos::retry::RetryPolicy;
use cosmount::cos::{ClientConfig, CosClient, Endpoint};
use cosmount::emulator::{Emulator, EmulatorConfig};

pub const BUCKET: &str = "examplebucket-1250000000";

/// An emulator on 127.0.0.1 with its own data directory; both go away on drop.
pub struct TestEmulator {
    pub emulator: Emulator,
    pub dir: tempfile::TempDir,
    pub config: EmulatorConfig,
}

impl TestEmulator {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut EmulatorConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EmulatorConfig {
            data_dir: dir.path().join("data"),
            ..Default::default()
        };
        tweak(&mut config);
        let emulator = Emulator::start_background(config.clone()).unwrap();
        TestEmulator {
            emulator,
            dir,
            config,
        }
    }

    pub fn endpoint(&self) -> String {
        self.emulator.endpoint()
    }

    /// The default bucket's name (the first `--bucket`, without an `@region`).
    pub fn bucket(&self) -> &str {
        let first = &self.config.buckets[0];
        first.split('@').next().unwrap_or(first)
    }

    /// The emulator's credentials as `--credential` takes them.
    pub fn credential_arg(&self) -> String {
        format!(
            "hmac:{}:{}",
            self.config.secret_id,
            self.config.secret_key.expose()
        )
    }

    pub fn credentials(&self) -> Credentials {
        let c = Credentials::new(
            self.config.secret_id.clone(),
            self.config.secret_key.expose().to_string(),
        );
        match &self.config.session_token {
            Some(t) => c.with_session_token(t.expose().to_string()),
            None => c,
        }
    }

    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            bucket: self.bucket().to_string(),
            endpoint: Endpoint::Url(self.endpoint().parse().unwrap()),
            credentials: self.credentials(),
            retry: RetryPolicy {
                base_delay: Duration::from_millis(2),
                max_delay: Duration::from_millis(50),
                ..RetryPolicy::default()
            },
            read_timeout: Duration::from_secs(5),
            ..Default::default()
        }
    }

    pub fn client(&self) -> Arc<CosClient> {
        Arc::new(CosClient::new(self.client_config()).unwrap())
    }

    pub fn op_count(&self, op: &str) -> u64 {
        self.emulator.stats().get(op).copied().unwrap_or(0)
    }
}

/// A tokio runtime for driving the async client from a synchronous test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The official SDK's python (a venv made by scripts/sdk-venv.sh; scripts/test.sh exports it).
pub fn sdk_python() -> String {
    installed("COSMOUNT_SDK_PYTHON", "sdk-venv.sh")
}

/// The path in `$var` (scripts/test.sh exports it), else what `scripts/<script>`, which installs
/// the tool the first time, prints.
pub fn installed(var: &str, script: &str) -> String {
    if let Ok(p) = std::env::var(var) {
        return p;
    }
    let path = format!("{}/scripts/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(&path)
        .output()
        .unwrap_or_else(|e| panic!("run {path}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn sdk(emu: &TestEmulator, args: &[&str]) -> std::process::Output {
    std::process::Command::new(sdk_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/conformance/sdk_tool.py"
        ))
        .args(args)
        .env("SDK_PORT", emu.emulator.addr().port().to_string())
        .env("SDK_SECRET_ID", &emu.config.secret_id)
        .env("SDK_SECRET_KEY", emu.config.secret_key.expose())
        .env("SDK_BUCKET", emu.bucket())
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .output()
        .expect("run the SDK tool")
}

/// Like `sdk`, asserting success and returning stdout.
pub fn sdk_ok(emu: &TestEmulator, args: &[&str]) -> String {
    let out = sdk(emu, args);
    assert!(
        out.status.success(),
        "sdk {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a shell command line (in `dir`), asserting success; returns stdout.
pub fn sh(dir: &std::path::Path, cmd: &str) -> String {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "`{cmd}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell command line, returning (success, stdout+stderr).
pub fn sh_status(dir: &std::path::Path, cmd: &str) -> (bool, String) {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .output()
        .expect("run bash");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}
