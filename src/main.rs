//! `cosmount`: mount a COS bucket (or, with `--all-buckets`, every bucket of the account);
//! `cosmount buckets`: list the buckets; `cosmount cleanup-uploads`: abort leftover multipart
//! uploads.
//!
//! Start-up checks the mountpoint and the bucket (HEAD Bucket) before mounting and fails with
//! one clear line. Without `--foreground` the command re-runs itself as a detached child and
//! returns once the child reports the mount ready (or prints the child's error and fails), so
//! no `unsafe` fork is needed. SIGTERM and SIGINT unmount cleanly.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

use clap::Parser;
use cosmount::config::{self, BucketsArgs, CleanupArgs, ConfigError, MountConfig, ServiceConfig};
use cosmount::cos::client::parse_initiated;
use cosmount::cos::{ClientConfig, CosClient, CosError, ListObjects, ObjectClient};
use cosmount::fs::Filesystem;
use cosmount::fs::operations::Operations;
use cosmount::fs::service::{BucketClients, Service};
use cosmount::fuse::FuseAdapter;

/// Set in the environment of the detached child of a daemonising mount.
const DAEMON_CHILD_ENV: &str = "COSMOUNT_DAEMON_CHILD";
/// The line the child prints on stdout once the mount is ready.
const READY_LINE: &str = "cosmount-ready";

/// Exit codes: 2 for bad arguments or configuration, 1 when mounting fails.
const EXIT_USAGE: i32 = 2;
const EXIT_FAILURE: i32 = 1;
/// Attempts of the start-up bucket check: enough for a transient error, short enough to fail
/// fast on a wrong endpoint.
const STARTUP_ATTEMPTS: u32 = 3;

fn fail(code: i32, msg: impl std::fmt::Display) -> ! {
    // A daemon child reports through its stdout pipe, which the parent prints.
    if std::env::var_os(DAEMON_CHILD_ENV).is_some() {
        println!("error: {msg}");
        let _ = std::io::stdout().flush();
    } else {
        eprintln!("cosmount: {msg}");
    }
    std::process::exit(code)
}

fn init_logging(level: Option<&str>) {
    // fuser warns about every request kind left to its defaults; keep its errors only.
    let default = format!("{},fuser=error", level.unwrap_or("info"));
    let _ = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(default.as_str()),
    )
    .format_timestamp_millis()
    .try_init();
}

/// Bodies are fetched into buffers of megabytes, freed once read. glibc gives buffers that size
/// back to the kernel at once (mmap/munmap, heap trimming), so every new one is fresh memory
/// that faults in page by page (page faults were about 10% of the mount's samples during a
/// cold read here). Keeping freed memory for reuse, up to a bound, avoids most of that.
///
/// One arena: with one per thread, a body allocated by a tokio worker and freed later by
/// another thread (the data cache's writer, a FUSE reply) left its thread's heap to be
/// trimmed or unmapped and the next body faulted in afresh. A 1 GiB cold read with the data
/// cache on took 80-120 thousand page faults and 1.03-1.22 CPU-s in the mount, against 25
/// thousand and 0.77-0.80 with one arena; peak RSS of the 1 GiB read and write fell from
/// 150-168 MiB to 108-129, and parallel creates and random reads did not change measurably.
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() {
    keep_freed_memory();
    let args: Vec<OsString> = std::env::args_os().collect();
    // No bucket is called either: a bucket name ends in -<appid>.
    if args.get(1).is_some_and(|a| a == "cleanup-uploads") {
        let mut rest = vec![OsString::from("cosmount cleanup-uploads")];
        rest.extend(args.into_iter().skip(2));
        std::process::exit(cleanup_uploads(rest));
    }
    if args.get(1).is_some_and(|a| a == "buckets") {
        let mut rest = vec![OsString::from("cosmount buckets")];
        rest.extend(args.into_iter().skip(2));
        std::process::exit(list_buckets(rest));
    }
    let cfg = match config::parse_mount(args.clone()) {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are not errors.
            if args
                .iter()
                .any(|a| a == "--help" || a == "-h" || a == "--version" || a == "-V")
            {
                let _ = config::MountArgs::try_parse_from(args).map_err(|e| e.exit());
            }
            fail(EXIT_USAGE, e)
        }
    };
    init_logging(cfg.log_level.as_deref());
    if let Err(e) = config::check_mountpoint(&cfg.mountpoint, cfg.nonempty) {
        fail(EXIT_FAILURE, e);
    }
    if !cfg.foreground && std::env::var_os(DAEMON_CHILD_ENV).is_none() {
        std::process::exit(daemonise(&cfg, args));
    }
    std::process::exit(run_mount(cfg));
}

/// Re-runs this command as a detached child and waits for it to report the mount ready.
fn daemonise(cfg: &MountConfig, args: Vec<OsString>) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => fail(EXIT_FAILURE, format!("cannot find my own executable: {e}")),
    };
    let log: Stdio = match &cfg.log_file {
        Some(p) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            Ok(f) => f.into(),
            Err(e) => fail(
                EXIT_USAGE,
                format!("cannot open log file {}: {e}", p.display()),
            ),
        },
        None => Stdio::null(),
    };
    let mut child = match Command::new(exe)
        .args(&args[1..])
        .env(DAEMON_CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => fail(EXIT_FAILURE, format!("cannot start the mount process: {e}")),
    };
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    let line = line.trim();
    if line == READY_LINE {
        return 0;
    }
    let _ = child.wait();
    match line.strip_prefix("error: ") {
        Some(msg) => eprintln!("cosmount: {msg}"),
        None => eprintln!("cosmount: the mount process exited during start-up"),
    }
    EXIT_FAILURE
}

/// Sets the kernel read-ahead of this mount (its own backing device, `/sys/class/bdi/M:N`),
/// found through /proc/self/mountinfo so the not-yet-serving mount is never touched. The
/// kernel's default (128 KiB) means eight requests per MiB of a sequential read; larger reads
/// let one FUSE request carry up to 1 MiB. Needs root; otherwise the default stays.
fn raise_read_ahead(mountpoint: &std::path::Path, kib: u32) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let target = mountpoint.to_string_lossy();
    let dev = info
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(target.as_ref()))
        .filter_map(|l| l.split(' ').nth(2))
        .next_back();
    if let Some(dev) = dev {
        let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
        match std::fs::write(&path, kib.to_string()) {
            Ok(()) => log::debug!("read-ahead set to {kib} KiB ({path})"),
            Err(e) => log::debug!("cannot set read-ahead ({path}): {e}"),
        }
    }
}

/// What a COS error code says is wrong with the credentials, if it says so.
fn credentials_problem(code: &str) -> Option<&'static str> {
    Some(match code {
        "SignatureDoesNotMatch" => {
            "bad credentials: the SecretKey does not match the SecretId (SignatureDoesNotMatch)"
        }
        "InvalidAccessKeyId" => "bad credentials: the SecretId is unknown (InvalidAccessKeyId)",
        "ExpiredToken" | "InvalidToken" => {
            "bad credentials: the session token is invalid or expired"
        }
        _ => return None,
    })
}

/// Explains a failed GET Service in one line.
fn explain_service_error(service: &ServiceConfig, e: CosError) -> String {
    let endpoint = match &service.via {
        Some(via) => format!("service.cos.myqcloud.com via {via}"),
        None => "https://service.cos.myqcloud.com".into(),
    };
    if e.is_transport() {
        return format!("cannot reach the COS endpoint {endpoint}: {}", e.root());
    }
    let code = e.code().unwrap_or_default();
    if let Some(problem) = credentials_problem(code) {
        return problem.into();
    }
    match e.status() {
        Some(403) => format!(
            "access denied to the list of buckets ({code}): check the credentials' permissions"
        ),
        _ => format!("cannot list the buckets at {endpoint}: {e}"),
    }
}

/// Explains a failed bucket check in one line.
async fn explain_bucket_error(client: &CosClient, bucket: &str, e: CosError) -> String {
    let endpoint = client.config().endpoint.describe(bucket);
    if e.is_transport() {
        return format!("cannot reach the COS endpoint {endpoint}: {}", e.root());
    }
    // HEAD has no body: ask again with a GET to learn COS's error code.
    let code = match client.list_objects(ListObjects::new("").max_keys(1)).await {
        Err(e2) => e2.code().map(str::to_string),
        Ok(_) => None,
    }
    .or_else(|| e.code().map(str::to_string))
    .unwrap_or_default();
    if let Some(problem) = credentials_problem(&code) {
        return problem.into();
    }
    match (e.status(), code.as_str()) {
        (Some(404), _) | (_, "NoSuchBucket") => {
            format!("no such bucket: {bucket} at {endpoint} (check the bucket name and region)")
        }
        (Some(403), c) => {
            format!("access denied to bucket {bucket} ({c}): check the credentials' permissions")
        }
        _ => format!("cannot use bucket {bucket} at {endpoint}: {e}"),
    }
}

fn run_mount(cfg: MountConfig) -> i32 {
    for n in &cfg.notes {
        log::log!(n.level, "{}", n.text);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cosmount")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(EXIT_FAILURE, format!("cannot start the runtime: {e}")),
    };
    if let Some(service) = &cfg.service {
        let clients = match ServiceClients::new(service) {
            Ok(c) => c,
            Err(e) => fail(EXIT_USAGE, e),
        };
        // The start-up check: the credentials list the buckets.
        if let Err(e) = runtime.block_on(clients.checker.list_buckets()) {
            fail(EXIT_FAILURE, explain_service_error(service, e));
        }
        let svc = Service::new(Arc::new(clients), cfg.fs.clone(), service.region.clone());
        return serve(runtime, Arc::new(svc), &cfg, "every bucket".into());
    }
    let client = match CosClient::new(cfg.client.clone()) {
        Ok(c) => Arc::new(c),
        Err(e) => fail(EXIT_USAGE, e),
    };
    let checker = match fast_failing(&cfg.client) {
        Ok(c) => c,
        Err(e) => fail(EXIT_USAGE, e),
    };
    if let Err(e) = runtime.block_on(checker.head_bucket()) {
        let msg = runtime.block_on(explain_bucket_error(&checker, &cfg.bucket, e));
        fail(EXIT_FAILURE, msg);
    }
    // Two connections ready before the first call: a lookup sends a HEAD and a LIST at once,
    // and a connection made on demand roughly doubles a request's time on a fast link.
    runtime.block_on(async {
        let _ = futures::future::join(client.head_bucket(), client.head_bucket()).await;
    });
    let mut fs_cfg = cfg.fs.clone();
    if let Some((dir, max)) = &cfg.data_cache {
        match cosmount::fs::data_cache::DataCache::open(dir, *max) {
            Ok(c) => {
                log::info!(
                    "data cache in {} (at most {} MiB)",
                    dir.display(),
                    c.max_bytes() >> 20
                );
                fs_cfg.data_cache = Some(c);
            }
            Err(e) => fail(EXIT_USAGE, e),
        }
    }
    let fs = Arc::new(Filesystem::new(client, fs_cfg));
    serve(runtime, fs, &cfg, format!("bucket {}", cfg.bucket))
}

/// A client for start-up checks, which fail fast: a few attempts, not the full retry budget.
fn fast_failing(cfg: &ClientConfig) -> Result<CosClient, CosError> {
    CosClient::new(ClientConfig {
        retry: cosmount::cos::retry::RetryPolicy {
            max_attempts: STARTUP_ATTEMPTS,
            ..cfg.retry.clone()
        },
        ..cfg.clone()
    })
}

/// The clients of a mount of every bucket: GET Service, and each bucket at its region's
/// endpoint (or all through `--endpoint`).
struct ServiceClients {
    config: ServiceConfig,
    service: Arc<dyn ObjectClient>,
    /// GET Service for start-up checks.
    checker: CosClient,
}

impl ServiceClients {
    fn new(config: &ServiceConfig) -> Result<Self, CosError> {
        Ok(ServiceClients {
            service: Arc::new(CosClient::new(config.service_client())?),
            checker: fast_failing(&config.service_client())?,
            config: config.clone(),
        })
    }
}

impl BucketClients for ServiceClients {
    fn service(&self) -> Arc<dyn ObjectClient> {
        self.service.clone()
    }

    fn bucket(&self, bucket: &str, region: &str) -> Result<Arc<dyn ObjectClient>, CosError> {
        Ok(Arc::new(CosClient::new(
            self.config.client_for(bucket, region),
        )?))
    }
}

/// Mounts `fs` (`what` it is, for the log) and serves it until unmounted.
fn serve<F: Operations>(
    runtime: tokio::runtime::Runtime,
    fs: Arc<F>,
    cfg: &MountConfig,
    what: String,
) -> i32 {
    if let Err(e) = std::fs::create_dir_all(&cfg.fs.cache_dir) {
        fail(
            EXIT_USAGE,
            format!(
                "cannot create cache directory {}: {e}",
                cfg.fs.cache_dir.display()
            ),
        );
    }
    let adapter = FuseAdapter::new(fs, runtime.handle().clone());
    let notifier = adapter.notifier();
    let mut fuse_cfg = fuser::Config::default();
    let fs_name = match &cfg.service {
        Some(_) => "cosmount:all-buckets".to_string(),
        None => format!("cosmount:{}", cfg.bucket),
    };
    fuse_cfg.mount_options = vec![
        fuser::MountOption::FSName(fs_name),
        fuser::MountOption::Subtype("cosmount".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    if cfg.fs.read_only {
        fuse_cfg.mount_options.push(fuser::MountOption::RO);
    }
    if cfg.auto_unmount {
        fuse_cfg.mount_options.push(fuser::MountOption::AutoUnmount);
    }
    fuse_cfg.acl = if cfg.allow_other {
        fuser::SessionACL::All
    } else if cfg.allow_root {
        fuser::SessionACL::RootAndOwner
    } else {
        fuser::SessionACL::Owner
    };
    let mut session = match fuser::Session::new(adapter, &cfg.mountpoint, &fuse_cfg) {
        Ok(s) => s,
        Err(e) => fail(
            EXIT_FAILURE,
            format!("cannot mount on {}: {e}", cfg.mountpoint.display()),
        ),
    };
    let _ = notifier.set(session.notifier());
    log::info!("mounted {what} on {}", cfg.mountpoint.display());
    if cfg.read_ahead_kib > 0 {
        raise_read_ahead(&cfg.mountpoint, cfg.read_ahead_kib);
    }
    let mut unmounter = session.unmount_callable();
    let mountpoint = cfg.mountpoint.clone();
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        log::info!("signal received: unmounting {}", mountpoint.display());
        if let Err(e) = unmounter.unmount() {
            log::warn!("unmount failed ({e}); files are still open, unmounting lazily");
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&mountpoint)
                .status();
        }
    });
    if std::env::var_os(DAEMON_CHILD_ENV).is_some() {
        // Every path is absolute by now: leave the caller's directory, so the daemon does not
        // keep its file system busy.
        let _ = std::env::set_current_dir("/");
        println!("{READY_LINE}");
        let _ = std::io::stdout().flush();
    }
    let result = session.run();
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => 0,
        Err(e) => {
            log::error!("the FUSE session ended with an error: {e}");
            EXIT_FAILURE
        }
    }
}

/// `cosmount buckets`: the account's buckets, one a line: name, region, creation date.
fn list_buckets(args: Vec<OsString>) -> i32 {
    let a = match BucketsArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => fail(EXIT_USAGE, config::clap_error(&e)),
    };
    // Its failure is said in one line; retries on the way are not news.
    init_logging(Some("error"));
    let service = match config::service_config(&a.conn) {
        Ok(s) => s,
        Err(ConfigError(e)) => fail(EXIT_USAGE, e),
    };
    let client = match fast_failing(&service.service_client()) {
        Ok(c) => c,
        Err(e) => fail(EXIT_USAGE, e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => fail(EXIT_FAILURE, format!("cannot start the runtime: {e}")),
    };
    let mut buckets = match runtime.block_on(client.list_buckets()) {
        Ok(b) => b,
        Err(e) => fail(EXIT_FAILURE, explain_service_error(&service, e)),
    };
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    let name_width = buckets.iter().map(|b| b.name.len()).max().unwrap_or(0);
    let region_width = buckets.iter().map(|b| b.location.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for b in &buckets {
        let line = format!(
            "{:name_width$}  {:region_width$}  {}",
            b.name, b.location, b.creation_date
        );
        if writeln!(out, "{}", line.trim_end()).is_err() {
            // A closed pipe (`| head`): nothing more to say.
            return 0;
        }
    }
    0
}

/// `cosmount cleanup-uploads`: lists incomplete multipart uploads, aborts them with --apply.
fn cleanup_uploads(args: Vec<OsString>) -> i32 {
    let a = match CleanupArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    init_logging(Some("warn"));
    let older = match config::parse_duration(&a.older_than) {
        Ok(d) => d,
        Err(e) => fail(EXIT_USAGE, e),
    };
    let client_cfg = match config::client_config(&a.bucket, &a.conn) {
        Ok((c, _)) => c,
        Err(ConfigError(e)) => fail(EXIT_USAGE, e),
    };
    let client = match CosClient::new(client_cfg) {
        Ok(c) => c,
        Err(e) => fail(EXIT_USAGE, e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => fail(EXIT_FAILURE, format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        if let Err(e) = client.head_bucket().await {
            let msg = explain_bucket_error(&client, &a.bucket, e).await;
            fail(EXIT_FAILURE, msg);
        }
        let now = std::time::SystemTime::now();
        let (mut key_marker, mut id_marker) = (String::new(), String::new());
        let (mut found, mut aborted, mut failed) = (0, 0, 0);
        loop {
            let page = match client
                .list_multipart_uploads(&a.prefix, &key_marker, &id_marker)
                .await
            {
                Ok(p) => p,
                Err(e) => fail(EXIT_FAILURE, format!("cannot list multipart uploads: {e}")),
            };
            for u in &page.uploads {
                let age = parse_initiated(&u.initiated)
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or_default();
                if age < older {
                    continue;
                }
                found += 1;
                if a.apply {
                    match client.abort_multipart_upload(&u.key, &u.upload_id).await {
                        Ok(()) => {
                            aborted += 1;
                            println!(
                                "aborted {} (upload {}, {}s old)",
                                u.key,
                                u.upload_id,
                                age.as_secs()
                            );
                        }
                        Err(e) => {
                            failed += 1;
                            eprintln!("cosmount: could not abort {} ({}): {e}", u.key, u.upload_id);
                        }
                    }
                } else {
                    println!(
                        "would abort {} (upload {}, {}s old)",
                        u.key,
                        u.upload_id,
                        age.as_secs()
                    );
                }
            }
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(k), Some(i)) => {
                    key_marker = k;
                    id_marker = i;
                }
                _ => break,
            }
        }
        if a.apply {
            println!("{aborted} incomplete upload(s) aborted, {failed} failed");
        } else {
            println!("{found} incomplete upload(s) found; run again with --apply to abort them");
        }
        if failed > 0 { EXIT_FAILURE } else { 0 }
    })
}
