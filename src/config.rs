//! Mount options from every source, merged into the settings the rest of cosmount uses:
//! command-line flags (highest), `-o opt[,opt]` mount options (so `/etc/fstab` works), the
//! YAML config file (the seed's keys: `credential`, `name`, `work_dir`, `location`, plus
//! `endpoint` and the SSE keys), then defaults. Credentials come from `--credential`, the
//! environment, or a passwd file, first found wins. clap types stop here: everything leaves as
//! `ClientConfig` and `FsConfig`. Every error is one line that says what to fix. cosfs's own
//! option names, bucket forms and `url=` rule are translated in `cosfs` (a child module).

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser};
use serde::Deserialize;

use crate::cos::auth::Credentials;
use crate::cos::dialect::Api;
use crate::cos::retry::RetryPolicy;
use crate::cos::sse::{Sse, SseCKeys};
use crate::cos::{ClientConfig, Endpoint};
use crate::fs::FsConfig;
use crate::fs::attrs::Defaults;
use crate::fs::read::PrefetchConfig;

mod cosfs;

/// A configuration error: one line for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn cerr<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Sets an option that is not set yet: the first source wins (flags before `-o` options).
fn set<T>(slot: &mut Option<T>, v: T) {
    if slot.is_none() {
        *slot = Some(v);
    }
}

/// A line for the log about an option that was accepted: what cosmount does instead of what the
/// option asks, or why it changes nothing. Logged once logging is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: log::Level,
    pub text: String,
}

/// Where and as whom to reach COS; shared by the mount and `cleanup-uploads`.
#[derive(Args, Debug, Default, Clone)]
pub struct ConnectionArgs {
    /// COS region, e.g. ap-guangzhou (endpoint https://<bucket>.cos.<region>.myqcloud.com).
    #[arg(long)]
    pub region: Option<String>,
    /// Endpoint URL instead of the region's (a custom domain, a proxy, the emulator).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Credentials as hmac:<SecretId>:<SecretKey> (else COS_SECRET_ID/COS_SECRET_KEY,
    /// TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY, or a passwd file).
    #[arg(long)]
    pub credential: Option<String>,
    /// A cosfs-style passwd file (`bucket:SecretId:SecretKey` lines), mode 600.
    #[arg(long)]
    pub passwd_file: Option<PathBuf>,
    /// YAML config with the keys credential, name, work_dir, location, endpoint and SSE keys.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Server-side encryption: `cos` (SSE-COS) or `kms` (SSE-KMS).
    #[arg(long)]
    pub sse: Option<String>,
    /// SSE-KMS: the CMK id (default: COS's default key).
    #[arg(long)]
    pub sse_kms_key_id: Option<String>,
    /// SSE-KMS: base64 of a JSON encryption context.
    #[arg(long)]
    pub sse_kms_context: Option<String>,
    /// SSE-C: a file holding the 32-byte key, raw or base64 (never the key itself here).
    #[arg(long)]
    pub sse_c_key_file: Option<PathBuf>,
    /// Attempts per request, the first included.
    #[arg(long)]
    pub retry_max_attempts: Option<u32>,
    /// Delay before the first retry (doubles each time), e.g. 50ms.
    #[arg(long)]
    pub retry_base_delay: Option<String>,
    /// Longest wait for a response or its next bytes, e.g. 30s.
    #[arg(long)]
    pub request_timeout: Option<String>,
    /// Longest wait for a TCP (and TLS) connection, e.g. 10s (default).
    #[arg(long)]
    pub connect_timeout: Option<String>,
    /// COS storage class of the objects written: STANDARD (default), STANDARD_IA, ARCHIVE,
    /// DEEP_ARCHIVE, INTELLIGENT_TIERING, MAZ_STANDARD, MAZ_STANDARD_IA,
    /// MAZ_INTELLIGENT_TIERING.
    #[arg(long)]
    pub storage_class: Option<String>,
    /// The API spoken: `cos` (COS's own, the default) or `s3` (SigV4 and x-amz-* headers:
    /// COS's S3 API, or any S3-compatible store; credentials also from AWS_ACCESS_KEY_ID,
    /// ~/.aws/credentials and ~/.passwd-s3fs).
    #[arg(long)]
    pub api: Option<String>,
    /// S3: address the bucket in the path (http://host/bucket/key), not the host name; always
    /// so for an endpoint that is an IP address.
    #[arg(long)]
    pub force_path_style: bool,
    /// S3: the profile of ~/.aws/credentials (default: AWS_PROFILE, else default).
    #[arg(long)]
    pub profile: Option<String>,
    /// SSE-C keys already read from a cosfs key file (`-o use_sse=custom:FILE`).
    #[arg(skip)]
    pub sse_c_key: Option<SseCKeys>,
}

/// `cosmount [OPTIONS] BUCKET MOUNTPOINT`.
#[derive(Parser, Debug)]
#[command(
    name = "cosmount",
    version,
    about = "Mount a Tencent Cloud Object Storage (COS) bucket as a local directory",
    after_help = "Every option can also be given as -o name=value (e.g. in /etc/fstab with type fuse.cosmount), and cosfs's -o options work too (README: Coming from cosfs).\n`cosmount --all-buckets MOUNTPOINT` mounts every bucket of the account, one directory each.\nRun `cosmount buckets --help` to list the buckets, `cosmount cleanup-uploads --help` for the multipart cleanup command."
)]
pub struct MountArgs {
    /// The bucket, as <name>-<appid> (with --all-buckets: the mountpoint).
    pub bucket: String,
    /// An existing, empty directory.
    #[arg(required_unless_present = "all_buckets")]
    pub mountpoint: Option<PathBuf>,
    /// Mount every bucket of the account, one directory each, each reached in its own region
    /// (give MOUNTPOINT alone); mkdir and rmdir there make and delete buckets (in --region).
    #[arg(long)]
    pub all_buckets: bool,
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Mount options, comma-separated (`-o allow_other,uid=1000,metadata_ttl=5s`).
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// Mount only keys under this prefix (a "directory" of the bucket).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Refuse every change.
    #[arg(long)]
    pub read_only: bool,
    /// Let other users see the mount (needs user_allow_other in /etc/fuse.conf for non-root).
    #[arg(long)]
    pub allow_other: bool,
    /// Let root see the mount.
    #[arg(long)]
    pub allow_root: bool,
    /// Unmount automatically when the process dies.
    #[arg(long)]
    pub auto_unmount: bool,
    /// Stay in the foreground (otherwise return once the mount is ready).
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Allow mounting over a non-empty directory.
    #[arg(long)]
    pub nonempty: bool,
    /// error, warn, info, debug or trace (RUST_LOG overrides).
    #[arg(long)]
    pub log_level: Option<String>,
    /// Where a daemonised mount writes its log (default: nowhere).
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Owner of objects without x-cos-meta-uid (default: the mounting user).
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group of objects without x-cos-meta-gid (default: the mounting user's group).
    #[arg(long)]
    pub gid: Option<u32>,
    /// Permissions of files without x-cos-meta-mode, octal (default 0644).
    #[arg(long)]
    pub file_mode: Option<String>,
    /// Permissions of directories without x-cos-meta-mode, octal (default 0755).
    #[arg(long)]
    pub dir_mode: Option<String>,
    /// How long metadata is trusted: e.g. 1s (default), 30s, or `indefinite`.
    #[arg(long)]
    pub metadata_ttl: Option<String>,
    /// How long a missing name is remembered (default 0s: an object another client creates
    /// is found at once), e.g. 1s.
    #[arg(long)]
    pub negative_ttl: Option<String>,
    /// How long a complete directory listing is reused for a repeated `ls` and for lookups of
    /// names it lacks (default 0s: never; another client's new and removed objects show at
    /// once), e.g. 5s.
    #[arg(long)]
    pub listing_ttl: Option<String>,
    /// Entries in the metadata cache (default 100000).
    #[arg(long)]
    pub metadata_cache_size: Option<usize>,
    /// Directory for staging files of files being written (default: $TMPDIR/cosmount).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Keep blocks of the objects read and written in DIR, for repeated reads and across
    /// remounts (a local data cache; off by default).
    #[arg(long, value_name = "DIR")]
    pub data_cache: Option<PathBuf>,
    /// Bound of the data cache, e.g. 20G (default: 5G, and at most a tenth of the free space
    /// of its file system).
    #[arg(long)]
    pub max_cache_size: Option<String>,
    /// Multipart part size, e.g. 8M (default 8 MiB; files up to it are one PUT).
    #[arg(long)]
    pub part_size: Option<String>,
    /// Part uploads in flight per mount (default 8).
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Largest sequential prefetch window per open file, e.g. 64M (default).
    #[arg(long)]
    pub prefetch_window: Option<String>,
    /// Prefetch memory for the whole mount, e.g. 512M (default).
    #[arg(long)]
    pub prefetch_memory: Option<String>,
    /// Kernel read-ahead for this mount, e.g. 1M (default; 0 keeps the kernel's 128K).
    #[arg(long)]
    pub read_ahead: Option<String>,
    /// Trust listings alone (no HEAD per listed entry): faster `ls -l` of big cold
    /// directories, but modes, owners and symlinks of entries not yet looked up show defaults.
    #[arg(long)]
    pub fast_listing: bool,
    /// Keep files out of the kernel's page cache (libfuse's `direct_io`): every read reaches
    /// cosmount (its prefetcher and data cache still serve it) and writes skip the kernel's
    /// copy into the page cache. Faster streaming of big files, at less CPU; nothing a program
    /// read is kept by the kernel for the next read. Passthrough files keep the cache's file.
    #[arg(long)]
    pub direct_io: bool,
    /// Refuse extended attributes (ENOTSUP), as cosfs's `noxattr`.
    #[arg(long)]
    pub no_xattr: bool,
    /// Serve files the data cache holds whole through cosmount instead of by FUSE
    /// passthrough (the kernel reading the cache's file; Linux 6.9+, as root).
    #[arg(long)]
    pub no_passthrough: bool,
    /// Do not fetch the next small files of a directory that a program reads in listing order
    /// (`cat dir/*`, `grep -r`): each file is then fetched when it is read.
    #[arg(long)]
    pub no_read_ahead_files: bool,
    /// cosfs's -d: more log (info; twice: debug, in the foreground).
    #[arg(short = 'd', long = "debug", action = clap::ArgAction::Count, hide = true)]
    pub debug: u8,
    /// cosfs's -s (single-threaded FUSE): accepted, cosmount stays concurrent.
    #[arg(short = 's', hide = true)]
    pub single_thread: bool,
    /// cosfs options that are decided once every option is read.
    #[arg(skip)]
    pub cosfs: cosfs::CosfsOptions,
    /// Log lines about accepted options (see `Note`).
    #[arg(skip)]
    pub notes: Vec<Note>,
}

/// A mount of every bucket (`--all-buckets`), or `cosmount buckets`: what every client of it
/// shares, and where each goes.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Credentials, SSE, retries, timeouts and storage class; `client_for` sets the bucket and
    /// the endpoint.
    pub client: ClientConfig,
    /// `--endpoint`: every request goes to this address, with COS's own host names
    /// (`Endpoint::RegionVia`); otherwise each region's endpoint.
    pub via: Option<url::Url>,
    /// `--region`: where mkdir at the top makes buckets.
    pub region: Option<String>,
}

impl ServiceConfig {
    /// The client settings of `bucket` in `region`.
    pub fn client_for(&self, bucket: &str, region: &str) -> ClientConfig {
        let endpoint = match &self.via {
            Some(via) => Endpoint::RegionVia {
                region: region.to_string(),
                via: via.clone(),
            },
            None => Endpoint::Region(region.to_string()),
        };
        ClientConfig {
            bucket: bucket.to_string(),
            endpoint,
            region: Some(region.to_string()),
            ..self.client.clone()
        }
    }

    /// The client settings of GET Service, which goes to `service.cos.myqcloud.com` whatever
    /// the region (any valid one will do).
    pub fn service_client(&self) -> ClientConfig {
        self.client_for("", self.region.as_deref().unwrap_or("ap-guangzhou"))
    }
}

/// Everything `main` needs to mount.
#[derive(Debug, Clone)]
pub struct MountConfig {
    /// The bucket (empty for a mount of every bucket).
    pub bucket: String,
    /// `Some` for a mount of every bucket (`--all-buckets`).
    pub service: Option<ServiceConfig>,
    pub mountpoint: PathBuf,
    pub client: ClientConfig,
    pub fs: FsConfig,
    pub allow_other: bool,
    pub allow_root: bool,
    pub auto_unmount: bool,
    pub foreground: bool,
    pub nonempty: bool,
    pub log_level: Option<String>,
    pub log_file: Option<PathBuf>,
    /// Kernel read-ahead for the mount in KiB (0: the kernel's default).
    pub read_ahead_kib: u32,
    /// Lines to log about the options given (cosfs options accepted with a remark).
    pub notes: Vec<Note>,
    /// The data cache's directory and bound (`--data-cache`, `--max-cache-size`); the mount
    /// opens it.
    pub data_cache: Option<(PathBuf, Option<u64>)>,
}

/// The YAML config file (seed keys plus endpoint and SSE).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    credential: Option<String>,
    name: Option<String>,
    work_dir: Option<String>,
    location: Option<String>,
    endpoint: Option<String>,
    server_side_encryption: Option<String>,
    server_side_encryption_cos_kms_key_id: Option<String>,
    server_side_encryption_context: Option<String>,
    sse_c_key_file: Option<PathBuf>,
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml_ng::from_str(&text).map_err(|e| {
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("invalid YAML");
        ConfigError(format!("config file {}: {first}", path.display()))
    })
}

/// Parses `8M`, `8MiB`, `512k`, `1G`, `1048576` (binary units).
pub fn parse_size(s: &str) -> Result<u64, ConfigError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| ConfigError(format!("invalid size {s:?} (use e.g. 8M or 1048576)")))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return cerr(format!("invalid size {s:?} (use e.g. 8M or 1048576)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| ConfigError(format!("size {s:?} is too large")))
}

/// Parses `1s`, `500ms`, `2m`, `1h`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let t = s.trim();
    let bad = || {
        ConfigError(format!(
            "invalid duration {s:?} (use e.g. 500ms, 1s, 5m, 1h)"
        ))
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_mode(s: &str, what: &str) -> Result<u16, ConfigError> {
    match u16::from_str_radix(s.trim().trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => cerr(format!(
            "invalid {what} {s:?}: give octal permissions like 0644"
        )),
    }
}

/// `hmac:<SecretId>:<SecretKey>` (the seed's credential form).
pub fn parse_credential(s: &str) -> Result<Credentials, ConfigError> {
    let parts: Vec<&str> = s.splitn(3, ':').collect();
    match parts[..] {
        ["hmac", id, key] if !id.is_empty() && !key.is_empty() && !key.contains(':') => {
            Ok(Credentials::new(id, key))
        }
        [proto, _, _] if proto != "hmac" => cerr(format!(
            "unsupported credential protocol {proto:?}: only hmac:<SecretId>:<SecretKey> is supported"
        )),
        _ => cerr("malformed credential: expected hmac:<SecretId>:<SecretKey>"),
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// cosfs's system-wide passwd file, which cosfs (like s3fs for its own) lets its group read:
/// cosfs's documentation has it `chmod 640`.
const COSFS_SYSTEM_PASSWD: &str = "/etc/passwd-cosfs";
/// s3fs's, which it lets its group read too.
const S3FS_SYSTEM_PASSWD: &str = "/etc/passwd-s3fs";

/// Why a passwd file's permissions are refused, if they are: group or others may not read it,
/// except that cosfs's and s3fs's system-wide files may be read by their group.
fn passwd_permissions_problem(path: &Path, mode: u32) -> Option<String> {
    let shown = path.display();
    if path == Path::new(COSFS_SYSTEM_PASSWD) || path == Path::new(S3FS_SYSTEM_PASSWD) {
        (mode & 0o007 != 0)
            .then(|| format!("passwd file {shown} is readable by others; run chmod 640 on it"))
    } else {
        (mode & 0o077 != 0).then(|| {
            format!("passwd file {shown} is readable by group or others; run chmod 600 on it")
        })
    }
}

/// Reads a cosfs-style passwd file: `bucket:SecretId:SecretKey` or `SecretId:SecretKey` lines.
fn read_passwd_file(path: &Path, bucket: &str) -> Result<Option<Credentials>, ConfigError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError(format!("cannot read passwd file {}: {e}", path.display())))?;
    if let Some(problem) = passwd_permissions_problem(path, meta.permissions().mode()) {
        return cerr(problem);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read passwd file {}: {e}", path.display())))?;
    let mut fallback = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split(':').collect();
        match parts[..] {
            [b, id, key] if !id.is_empty() && !key.is_empty() => {
                if b == bucket {
                    return Ok(Some(Credentials::new(id, key)));
                }
            }
            [id, key] if !id.is_empty() && !key.is_empty() => {
                fallback.get_or_insert(Credentials::new(id, key));
            }
            _ => {
                return cerr(format!(
                    "passwd file {} line {}: expected bucket:SecretId:SecretKey",
                    path.display(),
                    n + 1
                ));
            }
        }
    }
    Ok(fallback)
}

/// The AWS shared credentials file: AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials.
fn aws_credentials_file() -> Option<PathBuf> {
    env_nonempty("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env_nonempty("HOME").map(|h| Path::new(&h).join(".aws/credentials")))
}

/// Reads `profile` of an AWS shared credentials file (INI: `[profile]`, then
/// `aws_access_key_id`, `aws_secret_access_key` and optionally `aws_session_token`).
fn read_aws_profile(path: &Path, profile: &str) -> Result<Option<Credentials>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "cannot read AWS credentials file {}: {e}",
            path.display()
        ))
    })?;
    let mut section = String::new();
    let (mut id, mut key, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        if section != profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = Some(v.trim().to_string()).filter(|v| !v.is_empty());
            match k.trim() {
                "aws_access_key_id" => id = v,
                "aws_secret_access_key" => key = v,
                "aws_session_token" => token = v,
                _ => {}
            }
        }
    }
    Ok(match (id, key) {
        (Some(id), Some(key)) => Some(credentials(id, key, token)),
        _ => None,
    })
}

/// Credentials from an id, a key and, for temporary credentials, a session token.
fn credentials(id: String, key: String, token: Option<String>) -> Credentials {
    let c = Credentials::new(id, key);
    match token {
        Some(t) => c.with_session_token(t),
        None => c,
    }
}

/// Where credentials are looked for besides an explicit credential and a passwd file.
struct CredentialSources<'a> {
    api: Api,
    /// `--profile` (S3).
    profile: Option<&'a str>,
}

/// Credentials, first found wins: explicit, an explicit `--profile` (S3), AWS_* (S3), COS_*,
/// TENCENTCLOUD_*, passwd file (the one given, else cosmount's default files, s3fs's for S3,
/// then cosfs's), and for S3 the AWS credentials file's profile (AWS_PROFILE, else default).
fn resolve_credentials(
    explicit: Option<&str>,
    passwd_file: Option<&Path>,
    bucket: &str,
    sources: CredentialSources<'_>,
) -> Result<Credentials, ConfigError> {
    if let Some(c) = explicit {
        return parse_credential(c);
    }
    let s3 = sources.api == Api::S3;
    let aws_file = aws_credentials_file();
    if let Some(profile) = sources.profile {
        let path = aws_file.ok_or_else(|| {
            ConfigError("--profile: no HOME to find ~/.aws/credentials in".into())
        })?;
        return read_aws_profile(&path, profile)?.ok_or_else(|| {
            ConfigError(format!(
                "no profile {profile:?} with aws_access_key_id and aws_secret_access_key in {}",
                path.display()
            ))
        });
    }
    let env_prefixes: &[(&str, &str, &str)] = &[
        (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ),
        ("COS_SECRET_ID", "COS_SECRET_KEY", "COS_SESSION_TOKEN"),
        (
            "TENCENTCLOUD_SECRET_ID",
            "TENCENTCLOUD_SECRET_KEY",
            "TENCENTCLOUD_SESSION_TOKEN",
        ),
    ];
    for (id_var, key_var, token_var) in &env_prefixes[if s3 { 0 } else { 1 }..] {
        if let (Some(id), Some(key)) = (env_nonempty(id_var), env_nonempty(key_var)) {
            return Ok(credentials(id, key, env_nonempty(token_var)));
        }
    }
    let mut candidates: Vec<PathBuf> = passwd_file.map(Path::to_path_buf).into_iter().collect();
    if passwd_file.is_none() {
        let home = env_nonempty("HOME");
        let mut files = vec![(".passwd-cosmount", "/etc/passwd-cosmount")];
        if s3 {
            files.push((".passwd-s3fs", S3FS_SYSTEM_PASSWD));
        }
        files.push((".passwd-cosfs", COSFS_SYSTEM_PASSWD));
        for (in_home, system) in files {
            if let Some(home) = &home {
                candidates.push(Path::new(home).join(in_home));
            }
            candidates.push(PathBuf::from(system));
        }
    }
    for p in candidates {
        if passwd_file.is_none() && !p.exists() {
            continue;
        }
        if let Some(c) = read_passwd_file(&p, bucket)? {
            return Ok(c);
        }
    }
    if s3 && let Some(path) = aws_file.filter(|p| p.exists()) {
        let profile = env_nonempty("AWS_PROFILE").unwrap_or_else(|| "default".into());
        if let Some(c) = read_aws_profile(&path, &profile)? {
            return Ok(c);
        }
    }
    if s3 {
        return cerr(
            "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, give --profile (~/.aws/credentials), --credential hmac:<AccessKeyId>:<SecretAccessKey> or --passwd-file (or ~/.passwd-s3fs)",
        );
    }
    cerr(
        "no credentials: give --credential hmac:<SecretId>:<SecretKey>, set COS_SECRET_ID and COS_SECRET_KEY, or use --passwd-file (or ~/.passwd-cosfs, /etc/passwd-cosfs)",
    )
}

/// `--api`: COS's own unless `s3` is asked for.
fn api_of(conn: &ConnectionArgs) -> Result<Api, ConfigError> {
    match &conn.api {
        None => Ok(Api::Cos),
        Some(a) => {
            Api::parse(a).ok_or_else(|| ConfigError(format!("invalid --api {a:?}: use cos or s3")))
        }
    }
}

/// Applies `-o` mount options onto the parsed flags (flags given explicitly win).
fn apply_mount_options(args: &mut MountArgs) -> Result<(), ConfigError> {
    // Options mount(8) and mount.fuse pass along that mean nothing to cosmount.
    const IGNORED: &[&str] = &[
        "rw",
        "dev",
        "nodev",
        "suid",
        "nosuid",
        "exec",
        "noexec",
        "atime",
        "noatime",
        "relatime",
        "norelatime",
        "strictatime",
        "diratime",
        "nodiratime",
        "async",
        "sync",
        "dirsync",
        "_netdev",
        "nofail",
        "noauto",
        "auto",
        "user",
        "nouser",
        "users",
        "defaults",
        "default_permissions",
        "lazytime",
        "nolazytime",
        "silent",
        "loud",
    ];
    let opts: Vec<String> = args
        .options
        .iter()
        .flat_map(|o| o.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect();
    for opt in opts {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n.replace('-', "_"), Some(v.to_string())),
            None => (opt.replace('-', "_"), None),
        };
        if IGNORED.contains(&name.as_str()) || name.starts_with("x-") || name == "comment" {
            continue;
        }
        let need = |v: Option<String>| -> Result<String, ConfigError> {
            v.ok_or_else(|| ConfigError(format!("mount option {name} needs a value ({name}=...)")))
        };
        let flag = |v: &Option<String>| -> Result<bool, ConfigError> {
            match v.as_deref() {
                None | Some("true") | Some("1") | Some("yes") => Ok(true),
                Some("false") | Some("0") | Some("no") => Ok(false),
                Some(other) => cerr(format!("mount option {name}={other}: expected a boolean")),
            }
        };
        let num = |v: String, what: &str| -> Result<u64, ConfigError> {
            v.parse()
                .map_err(|_| ConfigError(format!("mount option {what}={v}: expected a number")))
        };
        if cosfs::apply(args, &name, value.as_deref())? {
            continue;
        }
        match name.as_str() {
            "ro" | "read_only" => args.read_only |= flag(&value)?,
            "allow_other" => args.allow_other |= flag(&value)?,
            "allow_root" => args.allow_root |= flag(&value)?,
            "auto_unmount" => args.auto_unmount |= flag(&value)?,
            "nonempty" => args.nonempty |= flag(&value)?,
            "foreground" => args.foreground |= flag(&value)?,
            "fast_listing" => args.fast_listing |= flag(&value)?,
            "direct_io" => args.direct_io |= flag(&value)?,
            "no_xattr" | "noxattr" => args.no_xattr |= flag(&value)?,
            "no_passthrough" => args.no_passthrough |= flag(&value)?,
            "no_read_ahead_files" => args.no_read_ahead_files |= flag(&value)?,
            "storage_class" => set(&mut args.conn.storage_class, need(value)?),
            "api" => set(&mut args.conn.api, need(value)?),
            "sigv4" if flag(&value)? => set(&mut args.conn.api, "s3".to_string()),
            "force_path_style" | "use_path_request_style" => {
                args.conn.force_path_style |= flag(&value)?
            }
            "profile" => set(&mut args.conn.profile, need(value)?),
            "region" | "location" => set(&mut args.conn.region, need(value)?),
            "endpoint" => set(&mut args.conn.endpoint, need(value)?),
            "credential" => set(&mut args.conn.credential, need(value)?),
            "passwd_file" => set(&mut args.conn.passwd_file, need(value)?.into()),
            "config" => set(&mut args.conn.config, need(value)?.into()),
            "sse" => set(&mut args.conn.sse, need(value)?),
            "sse_kms_key_id" => set(&mut args.conn.sse_kms_key_id, need(value)?),
            "sse_kms_context" => set(&mut args.conn.sse_kms_context, need(value)?),
            "sse_c_key_file" => set(&mut args.conn.sse_c_key_file, need(value)?.into()),
            "sse_c_key" => {
                return cerr(
                    "an SSE-C key is never given as an option (ps would show it); use sse_c_key_file=FILE",
                );
            }
            "retry_max_attempts" => set(
                &mut args.conn.retry_max_attempts,
                num(need(value)?, "retry_max_attempts")? as u32,
            ),
            "retry_base_delay" => set(&mut args.conn.retry_base_delay, need(value)?),
            "request_timeout" => set(&mut args.conn.request_timeout, need(value)?),
            "connect_timeout" => set(&mut args.conn.connect_timeout, need(value)?),
            "prefix" | "work_dir" => set(&mut args.prefix, need(value)?),
            "log_level" => set(&mut args.log_level, need(value)?),
            "log_file" => set(&mut args.log_file, need(value)?.into()),
            "uid" => set(&mut args.uid, num(need(value)?, "uid")? as u32),
            "gid" => set(&mut args.gid, num(need(value)?, "gid")? as u32),
            "file_mode" => set(&mut args.file_mode, need(value)?),
            "dir_mode" => set(&mut args.dir_mode, need(value)?),
            "metadata_ttl" => set(&mut args.metadata_ttl, need(value)?),
            "negative_ttl" => set(&mut args.negative_ttl, need(value)?),
            "listing_ttl" => set(&mut args.listing_ttl, need(value)?),
            "metadata_cache_size" => set(
                &mut args.metadata_cache_size,
                num(need(value)?, "metadata_cache_size")? as usize,
            ),
            "cache_dir" => set(&mut args.cache_dir, need(value)?.into()),
            "data_cache" => set(&mut args.data_cache, need(value)?.into()),
            "max_cache_size" => set(&mut args.max_cache_size, need(value)?),
            "part_size" => set(&mut args.part_size, need(value)?),
            "max_concurrency" => set(
                &mut args.max_concurrency,
                num(need(value)?, "max_concurrency")? as usize,
            ),
            "prefetch_window" => set(&mut args.prefetch_window, need(value)?),
            "prefetch_memory" => set(&mut args.prefetch_memory, need(value)?),
            "read_ahead" => set(&mut args.read_ahead, need(value)?),
            other => return cerr(format!("unknown mount option {other:?}")),
        }
    }
    Ok(())
}

/// The mounting user's uid and gid (owner of /proc/self), without unsafe calls.
fn process_ids() -> (u32, u32) {
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0))
}

/// Client settings shared by the mount and the cleanup command.
pub fn client_config(
    bucket: &str,
    conn: &ConnectionArgs,
) -> Result<(ClientConfig, Option<String>), ConfigError> {
    api_of(conn)?.validate_bucket(bucket).map_err(ConfigError)?;
    client_settings(Some(bucket), conn)
}

/// Client settings of a mount of every bucket and of `cosmount buckets`: the same sources as
/// a bucket's (credentials from a passwd file only from a line without a bucket), no bucket.
pub fn service_config(conn: &ConnectionArgs) -> Result<ServiceConfig, ConfigError> {
    let (client, work_dir) = client_settings(None, conn)?;
    if client.api != Api::Cos {
        return cerr(
            "every bucket of an account is reached through COS's own API: --all-buckets and `cosmount buckets` take no --api s3",
        );
    }
    if work_dir.is_some() {
        return cerr(
            "the config file's work_dir names a directory of one bucket; it cannot be used for every bucket",
        );
    }
    if let Some(r) = &client.region {
        // The region buckets are made in, also with --endpoint.
        check_region(r)?;
    }
    let via = match &client.endpoint {
        Endpoint::Url(u) => Some(u.clone()),
        _ => None,
    };
    Ok(ServiceConfig {
        region: client.region.clone(),
        via,
        client,
    })
}

fn check_region(r: &str) -> Result<(), ConfigError> {
    if r.is_empty()
        || !r
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return cerr(format!("invalid region {r:?} (e.g. ap-guangzhou)"));
    }
    Ok(())
}

fn client_settings(
    bucket: Option<&str>,
    conn: &ConnectionArgs,
) -> Result<(ClientConfig, Option<String>), ConfigError> {
    let file = match &conn.config {
        Some(p) => read_file_config(p)?,
        None => FileConfig::default(),
    };
    match (&file.name, bucket) {
        (Some(name), Some(bucket)) if name != bucket => {
            return cerr(format!(
                "the config file names bucket {name:?} but the command line says {bucket:?}"
            ));
        }
        (Some(name), None) => {
            return cerr(format!(
                "the config file names bucket {name:?}, but this is for every bucket of the account: remove name"
            ));
        }
        _ => {}
    }
    let bucket = bucket.unwrap_or("");
    let region = conn.region.clone().or(file.location.clone());
    let endpoint = conn.endpoint.clone().or(file.endpoint.clone());
    let endpoint = match (&endpoint, &region) {
        (Some(url), _) => Endpoint::Url(
            url::Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| {
                    ConfigError(format!(
                        "invalid --endpoint {url:?}: expected an http(s):// URL"
                    ))
                })?,
        ),
        (None, Some(r)) => {
            check_region(r)?;
            Endpoint::Region(r.clone())
        }
        // GET Service has one endpoint for every region.
        (None, None) if bucket.is_empty() => Endpoint::Region("ap-guangzhou".into()),
        (None, None) => {
            return cerr("no endpoint: give --region (e.g. ap-guangzhou) or --endpoint URL");
        }
    };
    let api = api_of(conn)?;
    if api == Api::Cos && (conn.force_path_style || conn.profile.is_some()) {
        return cerr(
            "--force-path-style and --profile are for --api s3 (COS's own API addresses buckets by host name)",
        );
    }
    let explicit = conn.credential.clone().or(file.credential.clone());
    let credentials = resolve_credentials(
        explicit.as_deref(),
        conn.passwd_file.as_deref(),
        bucket,
        CredentialSources {
            api,
            profile: conn.profile.as_deref(),
        },
    )?;

    let sse_kind = conn
        .sse
        .clone()
        .or(file.server_side_encryption.clone())
        .map(|s| s.to_ascii_lowercase());
    let key_id = conn
        .sse_kms_key_id
        .clone()
        .or(file.server_side_encryption_cos_kms_key_id.clone());
    let context = conn
        .sse_kms_context
        .clone()
        .or(file.server_side_encryption_context.clone());
    let key_file = conn.sse_c_key_file.clone().or(file.sse_c_key_file.clone());
    if sse_kind.is_some() && (key_file.is_some() || conn.sse_c_key.is_some()) {
        return cerr(
            "--sse and --sse-c-key-file cannot be combined: choose one kind of encryption",
        );
    }
    let customer_key = match (&conn.sse_c_key, key_file) {
        (Some(_), Some(_)) => {
            return cerr("use_sse=custom and --sse-c-key-file cannot be combined: give one key");
        }
        (Some(key), None) => Some(key.clone()),
        (None, Some(path)) => {
            let data = std::fs::read(&path).map_err(|e| {
                ConfigError(format!(
                    "cannot read SSE-C key file {}: {e}",
                    path.display()
                ))
            })?;
            Some(
                SseCKeys::from_file_contents(&data)
                    .map_err(|e| ConfigError(format!("SSE-C key file {}: {e}", path.display())))?,
            )
        }
        (None, None) => None,
    };
    let sse = match (sse_kind.as_deref(), customer_key) {
        (_, Some(key)) => Sse::Customer(key),
        (Some("cos") | Some("aes256") | Some("sse-cos"), None) => {
            if key_id.is_some() || context.is_some() {
                return cerr("--sse-kms-key-id and --sse-kms-context need --sse kms");
            }
            Sse::Cos
        }
        (Some("kms") | Some("cos/kms") | Some("sse-kms"), None) => {
            if let Some(ctx) = &context {
                use base64::Engine;
                let ok = base64::engine::general_purpose::STANDARD
                    .decode(ctx)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .is_some_and(|v| v.is_object());
                if !ok {
                    return cerr("--sse-kms-context must be base64 of a JSON object");
                }
            }
            Sse::Kms { key_id, context }
        }
        (Some(other), None) => {
            return cerr(format!(
                "invalid --sse {other:?}: use cos or kms (SSE-C: --sse-c-key-file)"
            ));
        }
        (None, None) => {
            if key_id.is_some() || context.is_some() {
                return cerr("--sse-kms-key-id and --sse-kms-context need --sse kms");
            }
            Sse::None
        }
    };
    let mut retry = RetryPolicy::default();
    if let Some(n) = conn.retry_max_attempts {
        if n == 0 {
            return cerr("--retry-max-attempts must be at least 1");
        }
        retry.max_attempts = n;
    }
    if let Some(d) = &conn.retry_base_delay {
        retry.base_delay = parse_duration(d)?;
    }
    let mut client = ClientConfig {
        bucket: bucket.to_string(),
        endpoint,
        region,
        credentials,
        sse,
        retry,
        api,
        path_style: conn.force_path_style,
        ..Default::default()
    };
    if let Some(t) = &conn.request_timeout {
        client.read_timeout = parse_duration(t)?;
        if client.read_timeout.is_zero() {
            return cerr("--request-timeout must be more than zero");
        }
    }
    if let Some(t) = &conn.connect_timeout {
        client.connect_timeout = parse_duration(t)?;
        if client.connect_timeout.is_zero() {
            return cerr("--connect-timeout must be more than zero");
        }
    }
    if let Some(c) = &conn.storage_class {
        let c = c.to_ascii_uppercase();
        if !crate::cos::client::STORAGE_CLASSES.contains(&c.as_str()) {
            return cerr(format!(
                "unknown storage class {c:?} (one of {})",
                crate::cos::client::STORAGE_CLASSES.join(", ")
            ));
        }
        client.storage_class = Some(c);
    }
    Ok((client, file.work_dir))
}

fn normalize_prefix(p: &str) -> Result<String, ConfigError> {
    let trimmed = p.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return cerr(format!(
            "invalid --prefix {p:?}: empty, `.` or `..` segments"
        ));
    }
    Ok(format!("{trimmed}/"))
}

/// A command-line error from clap as one line (with what a line ending in `:` announces).
pub fn clap_error(e: &clap::Error) -> ConfigError {
    let text = e.to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut first = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    if first.ends_with(':')
        && let Some(next) = lines.next()
    {
        first = format!("{first} {next}");
    }
    ConfigError(first)
}

/// Parses a mount command line (`args[0]` is the program name).
pub fn parse_mount(args: Vec<OsString>) -> Result<MountConfig, ConfigError> {
    cosfs::refuse_utility_mode(&args)?;
    let all_buckets = args.iter().any(|a| a == "--all-buckets");
    let mut a = MountArgs::try_parse_from(args).map_err(|e| {
        if all_buckets && e.kind() == clap::error::ErrorKind::MissingRequiredArgument {
            return ConfigError(
                "--all-buckets needs MOUNTPOINT: cosmount --all-buckets MOUNTPOINT".into(),
            );
        }
        clap_error(&e)
    })?;
    if a.all_buckets {
        // The one positional argument clap gave to BUCKET is the mountpoint.
        if a.mountpoint.is_some() {
            return cerr(format!(
                "--all-buckets mounts every bucket: give MOUNTPOINT alone, not {:?}",
                a.bucket
            ));
        }
        a.mountpoint = Some(PathBuf::from(std::mem::take(&mut a.bucket)));
    } else {
        cosfs::normalize_bucket(&mut a)?;
    }
    apply_mount_options(&mut a)?;
    cosfs::finish(&mut a)?;
    if a.allow_other && a.allow_root {
        return cerr("--allow-other and --allow-root cannot be combined");
    }
    let (client, work_dir, service) = if a.all_buckets {
        if a.prefix.is_some() {
            return cerr(
                "--prefix names keys of one bucket; it cannot be combined with --all-buckets",
            );
        }
        // The cache keys its blocks by object key, not by bucket: one cache cannot serve two.
        if a.data_cache.is_some() {
            return cerr(
                "--data-cache holds the objects of one bucket; it cannot be combined with --all-buckets",
            );
        }
        let service = service_config(&a.conn)?;
        (service.service_client(), None, Some(service))
    } else {
        let (client, work_dir) = client_config(&a.bucket, &a.conn)?;
        (client, work_dir, None)
    };
    let prefix = normalize_prefix(a.prefix.as_deref().or(work_dir.as_deref()).unwrap_or(""))?;
    let (uid, gid) = process_ids();
    let mut fs = FsConfig {
        prefix,
        defaults: Defaults {
            uid: a.uid.unwrap_or(uid),
            gid: a.gid.unwrap_or(gid),
            file_mode: a
                .file_mode
                .as_deref()
                .map(|m| parse_mode(m, "--file-mode"))
                .transpose()?
                .unwrap_or(0o644),
            dir_mode: a
                .dir_mode
                .as_deref()
                .map(|m| parse_mode(m, "--dir-mode"))
                .transpose()?
                .unwrap_or(0o755),
        },
        read_only: a.read_only,
        fast_listing: a.fast_listing,
        direct_io: a.direct_io,
        xattrs: !a.no_xattr,
        passthrough: !a.no_passthrough,
        files_ahead: !a.no_read_ahead_files,
        ..FsConfig::default()
    };
    if let Some(t) = &a.metadata_ttl {
        fs.metadata_ttl = if t == "indefinite" {
            None
        } else {
            Some(parse_duration(t)?)
        };
    }
    if let Some(t) = &a.negative_ttl {
        fs.negative_ttl = parse_duration(t)?;
    } else if a.cosfs.remembers_missing_names() {
        // For `indefinite`, a year: what the kernel is told then too (`Filesystem::ttl`).
        fs.negative_ttl = fs
            .metadata_ttl
            .unwrap_or(Duration::from_secs(365 * 24 * 3600));
    }
    if let Some(t) = &a.listing_ttl {
        fs.listing_ttl = parse_duration(t)?;
    }
    if let Some(n) = a.metadata_cache_size {
        if n == 0 {
            return cerr("--metadata-cache-size must be at least 1");
        }
        fs.cache_entries = n;
    }
    if let Some(p) = &a.part_size {
        fs.part_size = parse_size(p)?;
        if !(crate::cos::client::MIN_PART_SIZE..=5 << 30).contains(&fs.part_size) {
            return cerr("--part-size must be between 1M and 5G (COS's part limits)");
        }
    }
    if let Some(n) = a.max_concurrency {
        if n == 0 || n > 1024 {
            return cerr("--max-concurrency must be between 1 and 1024");
        }
        fs.max_concurrency = n;
    }
    if let Some(w) = &a.prefetch_window {
        let w = parse_size(w)?;
        if w < 1 << 20 {
            return cerr("--prefetch-window must be at least 1M");
        }
        fs.prefetch = PrefetchConfig {
            max_window: w,
            ..PrefetchConfig::default()
        };
    }
    if let Some(m) = &a.prefetch_memory {
        fs.prefetch_memory = parse_size(m)?;
        if fs.prefetch_memory < 16 << 20 {
            return cerr("--prefetch-memory must be at least 16M");
        }
    }
    if let Some(d) = &a.cache_dir {
        fs.cache_dir = d.clone();
    }
    // Absolute paths: a daemonised mount leaves the caller's working directory.
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    fs.cache_dir = absolute(&fs.cache_dir);
    let mountpoint = absolute(a.mountpoint.as_deref().unwrap_or(Path::new("")));
    let log_file = a.log_file.as_deref().map(absolute);
    let max_cache = a.max_cache_size.as_deref().map(parse_size).transpose()?;
    if max_cache.is_some() && a.data_cache.is_none() {
        return cerr("--max-cache-size needs --data-cache DIR");
    }
    if max_cache.is_some_and(|m| m < 16 << 20) {
        return cerr("--max-cache-size must be at least 16M");
    }
    let data_cache = a.data_cache.as_deref().map(|d| (absolute(d), max_cache));
    let read_ahead_kib = match &a.read_ahead {
        Some(r) => {
            let bytes = parse_size(r)?;
            if bytes > 64 << 20 {
                return cerr("--read-ahead must be at most 64M");
            }
            (bytes / 1024) as u32
        }
        None => 1024,
    };
    if let Some(level) = &a.log_level
        && !matches!(
            level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace" | "off"
        )
    {
        return cerr(format!(
            "invalid --log-level {level:?}: use error, warn, info, debug or trace"
        ));
    }
    Ok(MountConfig {
        bucket: a.bucket,
        service,
        mountpoint,
        client,
        fs,
        allow_other: a.allow_other,
        allow_root: a.allow_root,
        auto_unmount: a.auto_unmount,
        foreground: a.foreground,
        nonempty: a.nonempty,
        log_level: a.log_level,
        log_file,
        read_ahead_kib,
        notes: a.notes,
        data_cache,
    })
}

/// Checks the mountpoint: it must exist, be a directory, and be empty unless `nonempty`.
pub fn check_mountpoint(path: &Path, nonempty: bool) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        ConfigError(format!(
            "mountpoint {} does not exist ({e})",
            path.display()
        ))
    })?;
    if !meta.is_dir() {
        return cerr(format!("mountpoint {} is not a directory", path.display()));
    }
    if !nonempty {
        let mut entries = std::fs::read_dir(path)
            .map_err(|e| ConfigError(format!("cannot read mountpoint {}: {e}", path.display())))?;
        if entries.next().is_some() {
            return cerr(format!(
                "mountpoint {} is not empty (use --nonempty to mount over it)",
                path.display()
            ));
        }
    }
    Ok(())
}

/// `cosmount buckets`: the account's buckets (GET Service).
#[derive(Parser, Debug)]
#[command(
    name = "cosmount buckets",
    about = "List the account's buckets (GET Service): name, region and creation date, one bucket a line",
    after_help = "Credentials come from the same sources as for a mount (a passwd file line without a bucket: SecretId:SecretKey). With --endpoint URL, requests go to that address with COS's own host names."
)]
pub struct BucketsArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

/// `cosmount cleanup-uploads BUCKET [--older-than DURATION] [--apply]`.
#[derive(Parser, Debug)]
#[command(
    name = "cosmount cleanup-uploads",
    about = "List (and with --apply, abort) incomplete multipart uploads left by interrupted writes"
)]
pub struct CleanupArgs {
    pub bucket: String,
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Only uploads started longer ago than this (default 1h, so running mounts are spared).
    #[arg(long, default_value = "1h")]
    pub older_than: String,
    /// Only keys under this prefix.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Abort the uploads instead of only listing them.
    #[arg(long)]
    pub apply: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<MountConfig, ConfigError> {
        let mut v: Vec<OsString> = vec!["cosmount".into()];
        v.extend(args.iter().map(OsString::from));
        parse_mount(v)
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("8M").unwrap(), 8 << 20);
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert!(parse_size("8X").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn credentials_forms() {
        let c = parse_credential("hmac:AKID:secret").unwrap();
        assert_eq!(c.secret_id, "AKID");
        assert!(parse_credential("hmac:AKID").is_err());
        assert!(parse_credential("basic:a:b").is_err());
        assert!(parse_credential("hmac::b").is_err());
    }

    #[test]
    fn s3_dialect_options_and_aws_credentials() {
        let d = tempfile::tempdir().unwrap();
        let creds = d.path().join("credentials");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = AKIDdefault\naws_secret_access_key = sd\n\n# c\n[work]\naws_access_key_id=AKIDwork\naws_secret_access_key=sw\naws_session_token = tok\n",
        )
        .unwrap();
        let c = read_aws_profile(&creds, "work").unwrap().unwrap();
        assert_eq!(c.secret_id, "AKIDwork");
        assert_eq!(c.secret_key.expose(), "sw");
        assert_eq!(c.session_token.as_ref().unwrap().expose(), "tok");
        assert_eq!(
            read_aws_profile(&creds, "default")
                .unwrap()
                .unwrap()
                .secret_id,
            "AKIDdefault"
        );
        assert!(read_aws_profile(&creds, "none").unwrap().is_none());

        // -o sigv4 and use_path_request_style, as s3fs users write them; S3 bucket names.
        let c = parse(&[
            "plain-bucket",
            "/m",
            "--credential",
            "hmac:a:b",
            "-o",
            "sigv4,use_path_request_style,endpoint=http://s3.example.com",
        ])
        .unwrap();
        assert_eq!(c.client.api, Api::S3);
        assert!(c.client.path_style);
        let base = ["--credential", "hmac:a:b", "--region", "ap-guangzhou"];
        let with = |extra: &[&str]| {
            let mut v = vec!["plain-bucket", "/m"];
            v.extend(base);
            v.extend(extra);
            parse(&v)
        };
        assert!(with(&[]).unwrap_err().0.contains("<name>-<appid>"));
        assert!(
            with(&["--api", "ftp"])
                .unwrap_err()
                .0
                .contains("invalid --api")
        );
        let mut cos = vec!["b-1250000000", "/m", "--force-path-style"];
        cos.extend(base);
        let e = parse(&cos).unwrap_err();
        assert!(e.0.contains("--api s3"), "{e:?}");
        assert!(with(&["--api", "s3"]).is_ok());
    }

    #[test]
    fn mount_options_in_fstab_form() {
        let c = parse(&[
            "b-1250000000",
            "/mnt",
            "--credential",
            "hmac:a:b",
            "-o",
            "rw,_netdev,allow_other,endpoint=http://127.0.0.1:9,uid=1000,metadata_ttl=indefinite,part_size=16M",
        ])
        .unwrap();
        assert!(c.allow_other);
        assert_eq!(c.fs.defaults.uid, 1000);
        assert_eq!(c.fs.metadata_ttl, None);
        assert_eq!(c.fs.part_size, 16 << 20);
        assert!(
            parse(&[
                "b-1",
                "/m",
                "--credential",
                "hmac:a:b",
                "--region",
                "r",
                "-o",
                "bogus"
            ])
            .is_err()
        );
        let e = parse(&[
            "b-1",
            "/m",
            "--credential",
            "hmac:a:b",
            "--region",
            "r",
            "--allow-other",
            "--allow-root",
        ])
        .unwrap_err();
        assert!(e.0.contains("cannot be combined"));
        let e = parse(&[
            "b-1",
            "/m",
            "--credential",
            "hmac:a:b",
            "--region",
            "r",
            "-o",
            "sse_c_key=abc",
        ])
        .unwrap_err();
        assert!(e.0.contains("sse_c_key_file"));
    }

    #[test]
    fn passwd_file_permissions() {
        let cosfs = Path::new(COSFS_SYSTEM_PASSWD);
        let other = Path::new("/home/u/.passwd-cosfs");
        assert_eq!(passwd_permissions_problem(cosfs, 0o100640), None);
        assert_eq!(passwd_permissions_problem(cosfs, 0o100600), None);
        assert!(
            passwd_permissions_problem(cosfs, 0o100644)
                .unwrap()
                .contains("chmod 640")
        );
        assert!(
            passwd_permissions_problem(other, 0o100640)
                .unwrap()
                .contains("chmod 600")
        );
        assert_eq!(passwd_permissions_problem(other, 0o100600), None);
    }

    #[test]
    fn bad_bucket_and_missing_endpoint() {
        assert!(
            parse(&[
                "Bad_Bucket",
                "/m",
                "--credential",
                "hmac:a:b",
                "--region",
                "r"
            ])
            .is_err()
        );
        let e = parse(&["b-1", "/m", "--credential", "hmac:a:b"]).unwrap_err();
        assert!(e.0.contains("--region"));
    }
}
