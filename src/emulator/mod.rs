//! A local COS-compatible server (design.md §6): objects as files, COS's XML API, q-sign
//! signature verification, SSE semantics, multipart rules and fault injection. It lets every
//! test, the demo and the benchmarks run with no cloud account; the official Python SDK is run
//! against it to prove that it speaks COS.
//!
//! `Emulator::start` serves on the caller's tokio runtime; `Emulator::start_background` brings
//! its own runtime (for tests whose main thread does blocking file I/O on a mount).

pub mod faults;
pub mod header_case;
pub mod server;
pub mod store;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cos::auth::Secret;
use server::State;
use store::Bucket;

/// How to run an emulator. `Default` gives one bucket `examplebucket-1250000000` in
/// `ap-guangzhou` with fixed test credentials; `data_dir` must be set.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub secret_id: String,
    pub secret_key: Secret,
    /// When set, every request must carry this `x-cos-security-token` (temporary credentials).
    pub session_token: Option<Secret>,
    /// `name-appid`, or `name-appid@region` for a bucket in a region of its own; the first is
    /// the default bucket for IP / localhost hosts.
    pub buckets: Vec<String>,
    /// The region of buckets given without one.
    pub region: String,
    /// Initial fault rules (faults.rs syntax).
    pub faults: Option<String>,
    /// Say more in SignatureDoesNotMatch messages.
    pub debug: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            data_dir: PathBuf::new(),
            secret_id: "AKIDcosmountEXAMPLE".into(),
            secret_key: Secret::new("cosmount-emulator-secret-key"),
            session_token: None,
            buckets: vec!["examplebucket-1250000000".into()],
            region: "ap-guangzhou".into(),
            faults: None,
            debug: false,
        }
    }
}

/// Checks a bucket name: `<name>-<appid>`, lowercase letters, digits and dashes (§1).
pub fn validate_bucket_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let appid_ok = name.rsplit_once('-').is_some_and(|(n, id)| {
        !n.is_empty() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
    });
    if !ok_chars || !appid_ok || name.starts_with('-') || name.len() > 60 {
        return Err(format!(
            "bucket {name:?} is not of the form <name>-<appid> (lowercase letters, digits, dashes; numeric appid)"
        ));
    }
    Ok(())
}

/// Splits a `--bucket` value, `name-appid` or `name-appid@region`, checking both parts.
pub fn parse_bucket_spec(spec: &str) -> Result<(String, Option<String>), String> {
    let (name, region) = match spec.split_once('@') {
        Some((n, r)) => (n, Some(r)),
        None => (spec, None),
    };
    validate_bucket_name(name)?;
    if let Some(r) = region
        && !valid_region(r)
    {
        return Err(format!(
            "bucket {spec:?}: region {r:?} is not a region name (lowercase letters, digits, dashes, e.g. ap-beijing)"
        ));
    }
    Ok((name.to_string(), region.map(str::to_string)))
}

/// Region names: `ap-guangzhou`, `eu-frankfurt`, `ap-shenzhen-fsi`.
pub fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && !r.starts_with('-')
        && !r.ends_with('-')
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A running emulator; dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Emulator {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> io::Result<Emulator> {
        if config.buckets.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "at least one --bucket is required",
            ));
        }
        let mut specs = Vec::new();
        for b in &config.buckets {
            specs.push(
                parse_bucket_spec(b).map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?,
            );
        }
        if !valid_region(&config.region) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--region {:?} is not a region name", config.region),
            ));
        }
        std::fs::create_dir_all(&config.data_dir)?;
        let mut buckets: Vec<Arc<Bucket>> = Vec::new();
        for (name, region) in &specs {
            if buckets.iter().any(|b| b.name == *name) {
                continue;
            }
            let region = region.as_deref().unwrap_or(&config.region);
            buckets.push(Arc::new(Bucket::open(&config.data_dir, name, region)?));
        }
        // Buckets made by PUT Bucket in an earlier run, unless the command line names them.
        for (name, region) in Bucket::made_by_put(&config.data_dir)? {
            if validate_bucket_name(&name).is_ok() && !buckets.iter().any(|b| b.name == name) {
                buckets.push(Arc::new(Bucket::open(&config.data_dir, &name, &region)?));
            }
        }
        let state = Arc::new(State::new(
            buckets,
            specs[0].0.clone(),
            config.data_dir.clone(),
            config.region.clone(),
            config.secret_id.clone(),
            config.secret_key.clone(),
            config.session_token.clone(),
            config.debug,
        ));
        if let Some(spec) = &config.faults {
            state
                .faults
                .set(spec)
                .map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
        }
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        let st = st.clone();
                        let mut conn_stop = stopped.clone();
                        tokio::spawn(async move {
                            let service = service_fn(move |req| server::handle(st.clone(), req));
                            // COS's header spelling (`ETag`, ...): the Python SDK needs it.
                            let io = TokioIo::new(header_case::CosHeaderCase::new(stream));
                            let conn = http1::Builder::new()
                                .max_buf_size(1 << 20)
                                .serve_connection(io, service);
                            tokio::select! {
                                _ = conn => {}
                                _ = conn_stop.changed() => {}
                            }
                        });
                    }
                }
            }
        });
        Ok(Emulator {
            addr,
            state,
            stop,
            runtime: None,
        })
    }

    /// Starts on a runtime of its own (two worker threads), for synchronous tests.
    pub fn start_background(config: EmulatorConfig) -> io::Result<Emulator> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cos-emulator")
            .enable_all()
            .build()?;
        let mut emu = runtime.block_on(Self::start(config))?;
        emu.runtime = Some(runtime);
        Ok(emu)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fault rules in force; tests change them while the emulator runs.
    pub fn faults(&self) -> &faults::Faults {
        &self.state.faults
    }

    /// Requests seen per operation since start or the last `reset_stats`.
    pub fn stats(&self) -> HashMap<&'static str, u64> {
        self.state.stats()
    }

    pub fn reset_stats(&self) {
        self.state.reset_stats()
    }

    /// Number of objects in `bucket` (for tests that check nothing was stored).
    pub fn object_count(&self, bucket: &str) -> usize {
        self.state
            .bucket(bucket)
            .map(|b| b.object_count())
            .unwrap_or(0)
    }

    /// Multipart uploads in progress in `bucket`.
    pub fn upload_count(&self, bucket: &str) -> usize {
        self.state
            .bucket(bucket)
            .map(|b| b.list_uploads().len())
            .unwrap_or(0)
    }

    /// The keys of the multipart uploads in progress in `bucket`, in key order.
    pub fn upload_keys(&self, bucket: &str) -> Vec<String> {
        self.state
            .bucket(bucket)
            .map(|b| b.list_uploads().into_iter().map(|u| u.key).collect())
            .unwrap_or_default()
    }

    /// The buckets served now, with their regions, in the order GET Service lists them.
    pub fn buckets(&self) -> Vec<(String, String)> {
        self.state
            .buckets()
            .iter()
            .map(|b| (b.name.clone(), b.region.clone()))
            .collect()
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_specs_with_and_without_a_region() {
        assert_eq!(
            parse_bucket_spec("a-1250000000").unwrap(),
            ("a-1250000000".to_string(), None)
        );
        assert_eq!(
            parse_bucket_spec("a-1250000000@ap-beijing").unwrap(),
            ("a-1250000000".to_string(), Some("ap-beijing".to_string()))
        );
        for bad in [
            "a-1250000000@",
            "a-1250000000@AP",
            "a-1250000000@-x",
            "A-1@ap-beijing",
        ] {
            assert!(parse_bucket_spec(bad).is_err(), "{bad}");
        }
    }
}
