//! cosfs compatibility: a cosfs command line or `/etc/fstab` line works with only the program
//! name (or the fstab type, `fuse.cosmount`) changed. This module knows what cosfs, and s3fs and
//! libfuse beneath it, mean by their mount options, by the bucket argument
//! (`bucket[:/path]`, the old `appid:bucket[:/path]`, fstab's `cosfs#bucket`) and by `url=`
//! (the bucket goes in front of the host), and turns each option into one of cosmount's own
//! settings, a note for the log where cosmount's behaviour already covers it, or a one-line
//! refusal. The README's cosfs table lists the same verdicts. `config.rs` hands every `-o`
//! option to `apply` first and calls `finish` once all are read; the settings it fills are the
//! ones cosmount's own flags fill, so a flag given explicitly still wins.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{ConfigError, MountArgs, Note, cerr, set};
use crate::cos::sse::SseCKeys;

/// What cosfs options decide only together (modes) or once every option is read (SSE-C keys).
#[derive(Debug, Default, Clone)]
pub struct CosfsOptions {
    /// `umask=`: bits removed from the default modes.
    umask: Option<u16>,
    /// `default_permission=`: the mode of objects without mode metadata, files and directories.
    default_permission: Option<u16>,
    /// `enable_noobj_cache`: remember missing names as long as attributes.
    noobj_cache: bool,
    /// `use_sse=custom:FILE` (or the old `use_sse=FILE`).
    sse_c_file: Option<PathBuf>,
    /// `use_sse=custom` without a file: the keys come from `load_sse_c`.
    sse_c_from_load: bool,
    /// `load_sse_c=FILE`.
    load_sse_c: Option<PathBuf>,
}

const PAGE_CACHE: &str = "cosmount keeps a file's page cache while the object's ETag is unchanged";
const REQUEST_SIZES: &str = "cosmount agrees request sizes with the kernel itself";
const ATTR_TIMEOUT: &str =
    "the kernel keeps attributes as long as cosmount does (stat_cache_expire, metadata_ttl)";
const INODES: &str = "cosmount numbers inodes itself";
const FORGET: &str = "cosmount keeps an inode number as long as the kernel holds it";
const READS: &str = "cosmount serves reads concurrently";
const NAME: &str = "cosmount names the mount cosmount:<bucket>, of type fuse.cosmount";

/// cosfs options whose purpose cosmount's behaviour already serves: accepted with this line.
const COVERED: &[(&str, &str)] = &[
    (
        "del_cache",
        "cosmount keeps no cache between mounts; a staging file is removed once its file is committed",
    ),
    (
        "multireq_max",
        "cosmount bounds its listing requests itself",
    ),
    ("nodnscache", "cosmount keeps no DNS cache of its own"),
    (
        "nosscache",
        "ignored: cosmount reuses its connections, and its TLS library needs no such switch",
    ),
    (
        "singlepart_copy_limit",
        "cosmount copies an object in one request up to 5 GiB (COS's limit) and in parts above it",
    ),
    (
        "nomultipart",
        "COS supports multipart uploads; cosmount uploads a file larger than one part (multipart_size) in parts",
    ),
    (
        "nocopyapi",
        "COS supports PUT Object-Copy, which cosmount uses for rename, chmod, chown and touch",
    ),
    (
        "norenameapi",
        "COS supports PUT Object-Copy, which cosmount uses for rename",
    ),
    (
        "noxmlns",
        "cosmount reads COS's XML without depending on its namespace",
    ),
    (
        "disable_content_md5",
        "cosmount sends no Content-MD5 header",
    ),
    ("fd_page_size", "cosfs itself no longer uses it"),
    (
        "curldbg",
        "cosmount has no wire dump; dbglevel=debug logs every COS request (method, key, status, time)",
    ),
    // libfuse options that appear on cosfs command lines.
    ("big_writes", "FUSE 3 always takes large writes"),
    ("large_read", "obsolete since Linux 2.6"),
    ("max_write", REQUEST_SIZES),
    ("max_read", REQUEST_SIZES),
    (
        "max_readahead",
        "cosmount sets the mount's read-ahead itself (read_ahead=)",
    ),
    ("kernel_cache", PAGE_CACHE),
    ("auto_cache", PAGE_CACHE),
    ("attr_timeout", ATTR_TIMEOUT),
    (
        "entry_timeout",
        "the kernel keeps names as long as cosmount keeps attributes (stat_cache_expire, metadata_ttl)",
    ),
    ("ac_attr_timeout", ATTR_TIMEOUT),
    (
        "negative_timeout",
        "missing names are remembered as enable_noobj_cache or negative_ttl say",
    ),
    ("use_ino", INODES),
    ("readdir_ino", INODES),
    (
        "hard_remove",
        "a removed file stays usable through the descriptors still open on it",
    ),
    ("noforget", FORGET),
    ("remember", FORGET),
    ("async_read", READS),
    ("sync_read", READS),
    ("atomic_o_trunc", "cosmount handles O_TRUNC itself"),
    (
        "intr",
        "a COS request already sent runs to its end, and its result is kept",
    ),
    ("fsname", NAME),
    ("subtype", NAME),
];

const TEMPORARY_CREDENTIALS: &str = "cosmount does not fetch or refresh temporary credentials; give SecretId:SecretKey in the passwd file, or COS_SECRET_ID, COS_SECRET_KEY and COS_SESSION_TOKEN";
const KEYS_AS_OPTIONS: &str =
    "keys are never given as options (ps would show them); put them in the passwd file";

/// cosfs options cosmount refuses, with the reason.
const REFUSED: &[(&str, &str)] = &[
    ("cam_role", TEMPORARY_CREDENTIALS),
    ("cam_role_endpoint", TEMPORARY_CREDENTIALS),
    ("ram_role", TEMPORARY_CREDENTIALS),
    (
        "no_check_certificate",
        "cosmount always verifies the server's TLS certificate (an http:// url needs none)",
    ),
    (
        "servicepath",
        "a path in front of every request is not supported; give url=http(s)://host",
    ),
    (
        "ahbe_conf",
        "cosmount does not add HTTP headers by file name suffix",
    ),
    (
        "enable_content_md5",
        "cosmount does not send Content-MD5 with uploads yet; use an https:// url to protect data in transit",
    ),
    (
        "user_agent_suffix",
        "cosmount cannot add to its User-Agent header",
    ),
    ("accessKeyId", KEYS_AS_OPTIONS),
    ("secretAccessKey", KEYS_AS_OPTIONS),
];

/// Old COS region names that are host labels too (`<bucket>.cn-south.myqcloud.com`), with the
/// regions they are now.
const OLD_REGIONS: &[(&str, &str)] = &[
    ("cn-east", "ap-shanghai"),
    ("cn-south", "ap-guangzhou"),
    ("cn-south-2", "ap-guangzhou-2"),
    ("cn-north", "ap-beijing-1"),
    ("cn-southwest", "ap-chengdu"),
    ("sg", "ap-singapore"),
];

fn note(args: &mut MountArgs, level: log::Level, name: &str, text: &str) {
    args.notes.push(Note {
        level,
        text: format!("-o {name}: {text}"),
    });
}

fn refuse<T>(name: &str, reason: &str) -> Result<T, ConfigError> {
    cerr(format!("mount option {name} is not supported: {reason}"))
}

fn need<'a>(name: &str, value: Option<&'a str>) -> Result<&'a str, ConfigError> {
    value.ok_or_else(|| ConfigError(format!("mount option {name} needs a value ({name}=...)")))
}

fn number<T: std::str::FromStr>(name: &str, value: &str, what: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| ConfigError(format!("mount option {name}={value}: expected {what}")))
}

/// Permissions in octal, as cosfs and libfuse read them (`022`, `0755`, `755`).
fn octal(name: &str, value: &str) -> Result<u16, ConfigError> {
    match u16::from_str_radix(value.trim(), 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => cerr(format!(
            "mount option {name}={value}: expected octal permissions from 0 to 777"
        )),
    }
}

/// Applies `name[=value]` when it is a cosfs (or s3fs, or libfuse) option that cosmount does not
/// spell the same way; `Ok(false)` leaves it to cosmount's own options.
pub(super) fn apply(
    args: &mut MountArgs,
    name: &str,
    value: Option<&str>,
) -> Result<bool, ConfigError> {
    match name {
        "url" | "host" => {
            let (endpoint, region) = endpoint_from_url(need(name, value)?, &args.bucket)?;
            set(&mut args.conn.endpoint, endpoint.to_string());
            if let Some(r) = region {
                set(&mut args.conn.region, r);
            }
        }
        // cosfs's endpoint is a region (the one it signs for); cosmount's is a URL.
        "endpoint" if value.is_some_and(|v| !v.contains("://")) => {
            set(&mut args.conn.region, need(name, value)?.to_string());
        }
        "dbglevel" => {
            let v = need(name, value)?;
            let level = match v.to_ascii_lowercase().as_str() {
                "silent" | "critical" | "crit" | "error" | "err" => "error",
                "warning" | "warn" | "wan" => "warn",
                "information" | "info" | "inf" => "info",
                "debug" | "dbg" => "debug",
                _ => {
                    return cerr(format!(
                        "mount option dbglevel={v}: use crit, err, warn, info or dbg"
                    ));
                }
            };
            set(&mut args.log_level, level.to_string());
        }
        "f2" => set(&mut args.log_level, "debug".to_string()),
        // libfuse's debug: FUSE's own trace in the foreground; cosmount's closest is its debug log.
        "debug" => {
            set(&mut args.log_level, "debug".to_string());
            args.foreground = true;
        }
        "umask" => set(&mut args.cosfs.umask, octal(name, need(name, value)?)?),
        "default_permission" => set(
            &mut args.cosfs.default_permission,
            octal(name, need(name, value)?)?,
        ),
        "mp_umask" => {
            octal(name, need(name, value)?)?;
            note(
                args,
                log::Level::Info,
                name,
                "the mount point has the permissions of every directory without mode metadata (umask, default_permission, dir_mode)",
            );
        }
        "multipart_size" => {
            let mb: u64 = number(name, need(name, value)?, "a part size in MB")?;
            set(&mut args.part_size, format!("{mb}M"));
        }
        "parallel_count" | "parallel_upload" => set(
            &mut args.max_concurrency,
            number(name, need(name, value)?, "a number of parallel requests")?,
        ),
        "stat_cache_expire" => set(&mut args.metadata_ttl, need(name, value)?.to_string()),
        "max_stat_cache_size" => set(
            &mut args.metadata_cache_size,
            number(name, need(name, value)?, "a number of entries")?,
        ),
        "enable_noobj_cache" => args.cosfs.noobj_cache = true,
        "use_sse" => use_sse(args, value)?,
        "load_sse_c" => set(&mut args.cosfs.load_sse_c, need(name, value)?.into()),
        "retries" => {
            let n: u32 = number(name, need(name, value)?, "a number of retries")?;
            set(&mut args.conn.retry_max_attempts, n.saturating_add(1));
        }
        "readwrite_timeout" => set(
            &mut args.conn.request_timeout,
            need(name, value)?.to_string(),
        ),
        "tmpdir" => set(&mut args.cache_dir, need(name, value)?.into()),
        "max_prefetch_bytes" => set(&mut args.prefetch_window, need(name, value)?.to_string()),
        "use_cache" => set(&mut args.data_cache, need(name, value)?.into()),
        "ensure_diskfree" => {
            number::<u64>(name, need(name, value)?, "a size in MB")?;
            note(
                args,
                log::Level::Warn,
                name,
                "cosmount does not reserve free disk space: staging files of files being written go to tmpdir (cache_dir) without a limit",
            );
        }
        "storage_class" | "use_rrs" => return storage_class(name, value),
        "default_acl" => match need(name, value)? {
            "default" => {}
            v => refuse(
                &format!("default_acl={v}"),
                "cosmount sets no object ACL, so objects follow the bucket's ACL; set the bucket's ACL instead",
            )?,
        },
        "public_bucket" => match need(name, value)? {
            "0" => {}
            "1" => refuse(
                "public_bucket=1",
                "anonymous access is not supported: cosmount signs every request",
            )?,
            v => cerr(format!("mount option public_bucket={v}: expected 0 or 1"))?,
        },
        "ssl_verify_hostname" => {
            if need(name, value)? == "0" {
                return refuse(
                    "ssl_verify_hostname=0",
                    "cosmount always verifies the server's TLS certificate and host name",
                );
            }
        }
        _ => {
            if let Some((_, text)) = COVERED.iter().find(|(n, _)| *n == name) {
                note(args, log::Level::Info, name, text);
            } else if let Some((_, reason)) = REFUSED.iter().find(|(n, _)| *n == name) {
                return refuse(name, reason);
            } else {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// cosfs's storage classes are COS's, in lower case; reduced redundancy is S3's alone. A class
/// cosmount knows is left to its own `storage_class`.
fn storage_class(name: &str, value: Option<&str>) -> Result<bool, ConfigError> {
    const NO_RRS: &str = "reduced redundancy is an S3 storage class that COS does not have; use storage_class=standard_ia or another COS class";
    match (name, value) {
        ("use_rrs", Some("0")) => Ok(true),
        ("use_rrs", None | Some("1")) => refuse("use_rrs", NO_RRS),
        ("use_rrs", Some(v)) => cerr(format!("mount option use_rrs={v}: expected 0 or 1")),
        (_, Some(v)) if v.eq_ignore_ascii_case("reduced_redundancy") => {
            refuse("storage_class=reduced_redundancy", NO_RRS)
        }
        _ => Ok(false),
    }
}

/// cosfs's `use_sse`: `use_sse` or `=1` SSE-COS, `=0` none, `=kmsid[:ID]` (`k`) SSE-KMS,
/// `=custom[:FILE]` (`c`) SSE-C with the keys of FILE (or of `load_sse_c`), `=FILE` the old
/// spelling of `custom:FILE`.
fn use_sse(args: &mut MountArgs, value: Option<&str>) -> Result<(), ConfigError> {
    match value {
        None | Some("1") => set(&mut args.conn.sse, "cos".to_string()),
        Some("0") => {}
        Some("kmsid" | "k") => set(&mut args.conn.sse, "kms".to_string()),
        Some(v) if v.starts_with("kmsid:") || v.starts_with("k:") => {
            let id = v.split_once(':').map(|(_, id)| id).unwrap_or_default();
            if id.is_empty() {
                return cerr("mount option use_sse=kmsid: needs a key id after the colon");
            }
            set(&mut args.conn.sse, "kms".to_string());
            set(&mut args.conn.sse_kms_key_id, id.to_string());
        }
        Some("custom" | "c") => args.cosfs.sse_c_from_load = true,
        Some(v) => {
            let file = v
                .strip_prefix("custom:")
                .or_else(|| v.strip_prefix("c:"))
                .unwrap_or(v);
            if file.is_empty() {
                return cerr("mount option use_sse=custom: needs a key file after the colon");
            }
            set(&mut args.cosfs.sse_c_file, file.into());
        }
    }
    Ok(())
}

impl CosfsOptions {
    /// `enable_noobj_cache`: a missing name is remembered as long as attributes are.
    pub(super) fn remembers_missing_names(&self) -> bool {
        self.noobj_cache
    }
}

/// Decides what needs every option: the default modes, SSE-C keys, -d, -s.
pub(super) fn finish(args: &mut MountArgs) -> Result<(), ConfigError> {
    let c = args.cosfs.clone();
    if c.umask.is_some() || c.default_permission.is_some() {
        let umask = c.umask.unwrap_or(0);
        // Without default_permission, a umask applies to what a process creates: 0666 for a
        // file, 0777 for a directory (cosfs shows both as 0777 & ~umask, so files as executable).
        let file = c.default_permission.unwrap_or(0o666) & !umask;
        let dir = c.default_permission.unwrap_or(0o777) & !umask;
        set(&mut args.file_mode, format!("{file:o}"));
        set(&mut args.dir_mode, format!("{dir:o}"));
    }
    let sse_c_file = match (c.sse_c_file, c.sse_c_from_load, c.load_sse_c) {
        (Some(file), _, _) => Some(file),
        (None, true, Some(file)) => Some(file),
        (None, true, None) => {
            return cerr(
                "mount option use_sse=custom needs its keys: give use_sse=custom:FILE (or load_sse_c=FILE)",
            );
        }
        (None, false, Some(_)) => {
            return refuse(
                "load_sse_c",
                "cosmount encrypts what it writes with the first of its SSE-C keys; keys only for reading older objects (load_sse_c without use_sse=custom) are not supported",
            );
        }
        (None, false, None) => None,
    };
    if let Some(file) = sse_c_file {
        args.conn.sse_c_key = Some(read_sse_c_keys(&file)?);
    }
    if args.debug > 0 {
        set(
            &mut args.log_level,
            if args.debug > 1 { "debug" } else { "info" }.to_string(),
        );
        // libfuse takes the second -d as its own debug, which keeps it in the foreground.
        args.foreground |= args.debug > 1;
    }
    if args.single_thread {
        args.notes.push(Note {
            level: log::Level::Info,
            text: "-s: cosmount serves requests concurrently on its own; -s changes nothing".into(),
        });
    }
    Ok(())
}

/// Reads a cosfs (s3fs) SSE-C key file: one key a line, the first for writing and the others
/// for reading older objects (`SseCKeys::from_file_contents`). Errors never quote the file.
fn read_sse_c_keys(path: &Path) -> Result<SseCKeys, ConfigError> {
    let data = std::fs::read(path).map_err(|e| {
        ConfigError(format!(
            "cannot read SSE-C key file {}: {e}",
            path.display()
        ))
    })?;
    SseCKeys::from_file_contents(&data)
        .map_err(|e| ConfigError(format!("SSE-C key file {}: {e}", path.display())))
}

/// The bucket argument in cosfs's forms: `cosfs#bucket` (how mount.fuse passes an fstab line
/// whose type is changed to `fuse.cosmount`), `bucket:/path` (mount a directory), and the form
/// of cosfs 1.0.5 and older, `appid:name[:/path]`.
pub(super) fn normalize_bucket(args: &mut MountArgs) -> Result<(), ConfigError> {
    let arg = args.bucket.clone();
    let rest = ["cosfs#", "cosmount#"]
        .iter()
        .find_map(|p| arg.strip_prefix(p))
        .unwrap_or(&arg);
    let parts: Vec<&str> = rest.split(':').collect();
    let (bucket, path) = match parts[..] {
        [b] => (b.to_string(), None),
        [b, p] if p.starts_with('/') => (b.to_string(), Some(p)),
        [appid, name] if is_appid(appid) => (format!("{name}-{appid}"), None),
        [appid, name, p] if is_appid(appid) && p.starts_with('/') => {
            (format!("{name}-{appid}"), Some(p))
        }
        _ => {
            return cerr(format!(
                "bucket argument {arg:?}: expected <name>-<appid> or <name>-<appid>:/<directory>"
            ));
        }
    };
    // The name is checked with the rest of the client settings, by the API's rules.
    args.bucket = bucket;
    if let Some(p) = path {
        set(&mut args.prefix, p.to_string());
    }
    Ok(())
}

fn is_appid(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// cosfs's utility mode (`cosfs -u bucket`) lists and removes incomplete multipart uploads;
/// cosmount has a command for that.
pub(super) fn refuse_utility_mode(args: &[OsString]) -> Result<(), ConfigError> {
    if args.iter().skip(1).any(|a| a == "-u") {
        return cerr(
            "-u (cosfs's utility mode) is not an option of the mount: run `cosmount cleanup-uploads BUCKET` (with --apply to abort the uploads)",
        );
    }
    Ok(())
}

/// cosfs's `url=`: the endpoint for `bucket`, and the region when the host names one. As cosfs
/// (and Tencent's SDKs) do, the bucket goes in front of the URL's host:
/// `http://cos.ap-guangzhou.myqcloud.com` reaches `http://<bucket>.cos.ap-guangzhou.myqcloud.com`
/// (the scheme and port are kept; a URL without a scheme is http, as curl takes it). A host that
/// already starts with the bucket is used as is, and so is an IP address or `localhost` (an
/// emulator or a proxy that picks the bucket itself). A custom domain bound to the bucket is
/// cosmount's own `endpoint=URL`, which is used as is.
pub fn endpoint_from_url(
    url: &str,
    bucket: &str,
) -> Result<(url::Url, Option<String>), ConfigError> {
    let bad = || {
        ConfigError(format!(
            "invalid url={url}: expected http(s)://cos.<region>.myqcloud.com or another http(s)://host[:port], without the bucket or a path"
        ))
    };
    let trimmed = url.trim();
    let full = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let mut u = url::Url::parse(&full).map_err(|_| bad())?;
    // cosfs drops trailing slashes; anything else in the path would go before every key.
    if !u.path().trim_matches('/').is_empty() {
        return Err(bad());
    }
    u.set_path("/");
    if !matches!(u.scheme(), "http" | "https")
        || u.query().is_some()
        || u.fragment().is_some()
        || !u.username().is_empty()
        || u.password().is_some()
    {
        return Err(bad());
    }
    let host = match u.host() {
        Some(url::Host::Domain(d)) if d != "localhost" => d.to_ascii_lowercase(),
        Some(_) => return Ok((u, None)),
        None => return Err(bad()),
    };
    let service = host
        .strip_prefix(&format!("{bucket}."))
        .unwrap_or(&host)
        .to_string();
    u.set_host(Some(&format!("{bucket}.{service}")))
        .map_err(|_| bad())?;
    Ok((u, region_of_service_host(&service)))
}

/// The region a COS service host names: `cos.<region>.myqcloud.com`, `cos.<region>.tencentcos.cn`,
/// their `cos-internal.` forms, and the old `<region>.myqcloud.com` names.
fn region_of_service_host(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    let region = match labels[..] {
        ["cos" | "cos-internal", region, "myqcloud", "com"]
        | ["cos" | "cos-internal", region, "tencentcos", "cn"] => region,
        [old, "myqcloud", "com"] => OLD_REGIONS.iter().find(|(o, _)| *o == old)?.1,
        _ => return None,
    };
    let valid = region != "accelerate"
        && !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then(|| region.to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;
    use crate::config::{MountConfig, parse_mount};
    use crate::cos::Endpoint;
    use crate::cos::sse::{Sse, SseCKey};

    const B: &str = "examplebucket-1250000000";

    /// Parses `cosmount BUCKET /mnt ARGS` with credentials given, so the environment plays no
    /// part.
    fn parse(bucket: &str, args: &[&str]) -> Result<MountConfig, ConfigError> {
        let mut v: Vec<OsString> = vec!["cosmount".into(), bucket.into(), "/mnt".into()];
        v.extend(args.iter().map(OsString::from));
        v.extend(["--credential".into(), "hmac:AKIDx:secret".into()]);
        parse_mount(v)
    }

    /// Where cosfs's `url=http://cos.ap-guangzhou.myqcloud.com` sends requests for `B`.
    fn guangzhou_endpoint() -> Endpoint {
        let u = format!("http://{B}.cos.ap-guangzhou.myqcloud.com/");
        Endpoint::Url(u.parse().unwrap())
    }

    fn mapped(url: &str) -> (String, Option<String>) {
        let (u, r) = endpoint_from_url(url, B).unwrap();
        (u.to_string(), r)
    }

    #[test]
    fn url_puts_the_bucket_in_front_of_the_host_and_keeps_scheme_and_port() {
        let region = |r: &str| Some(r.to_string());
        assert_eq!(
            mapped("http://cos.ap-guangzhou.myqcloud.com"),
            (
                format!("http://{B}.cos.ap-guangzhou.myqcloud.com/"),
                region("ap-guangzhou")
            )
        );
        assert_eq!(
            mapped("https://cos.eu-frankfurt.myqcloud.com/"),
            (
                format!("https://{B}.cos.eu-frankfurt.myqcloud.com/"),
                region("eu-frankfurt")
            )
        );
        assert_eq!(
            mapped("http://cos.ap-shanghai.myqcloud.com:8080"),
            (
                format!("http://{B}.cos.ap-shanghai.myqcloud.com:8080/"),
                region("ap-shanghai")
            )
        );
        // Without a scheme, http (curl's default, so cosfs's too).
        assert_eq!(
            mapped("cos.ap-beijing.myqcloud.com"),
            (
                format!("http://{B}.cos.ap-beijing.myqcloud.com/"),
                region("ap-beijing")
            )
        );
        assert_eq!(
            mapped("https://cos.ap-chengdu.tencentcos.cn"),
            (
                format!("https://{B}.cos.ap-chengdu.tencentcos.cn/"),
                region("ap-chengdu")
            )
        );
        assert_eq!(
            mapped("http://cos-internal.ap-nanjing.tencentcos.cn"),
            (
                format!("http://{B}.cos-internal.ap-nanjing.tencentcos.cn/"),
                region("ap-nanjing")
            )
        );
        // cosfs's old README: cn-south is Guangzhou.
        assert_eq!(
            mapped("http://cn-south.myqcloud.com"),
            (
                format!("http://{B}.cn-south.myqcloud.com/"),
                region("ap-guangzhou")
            )
        );
        assert_eq!(
            mapped("https://cos.accelerate.myqcloud.com"),
            (format!("https://{B}.cos.accelerate.myqcloud.com/"), None)
        );
        // Any other domain: the bucket goes in front, as cosfs does.
        assert_eq!(
            mapped("https://files.example.com"),
            (format!("https://{B}.files.example.com/"), None)
        );
        // A host that already names the bucket is not given it twice.
        assert_eq!(
            mapped(&format!("https://{B}.cos.ap-guangzhou.myqcloud.com")),
            (
                format!("https://{B}.cos.ap-guangzhou.myqcloud.com/"),
                region("ap-guangzhou")
            )
        );
        assert_eq!(
            mapped("HTTP://COS.AP-GUANGZHOU.MYQCLOUD.COM"),
            (
                format!("http://{B}.cos.ap-guangzhou.myqcloud.com/"),
                region("ap-guangzhou")
            )
        );
    }

    #[test]
    fn url_with_an_ip_or_localhost_is_used_as_is() {
        for url in [
            "http://127.0.0.1:9000",
            "http://127.0.0.1:9000/",
            "http://localhost:9000",
            "https://10.0.0.7",
            "http://[::1]:9000",
        ] {
            let (u, r) = endpoint_from_url(url, B).unwrap();
            let expected = url::Url::parse(url.trim_end_matches('/')).unwrap();
            assert_eq!(u, expected, "{url}");
            assert_eq!(r, None, "{url}");
        }
    }

    #[test]
    fn url_with_a_path_or_another_scheme_is_refused() {
        for url in [
            "http://cos.ap-guangzhou.myqcloud.com/examplebucket-1250000000",
            "http://cos.ap-guangzhou.myqcloud.com/?x=1",
            "ftp://cos.ap-guangzhou.myqcloud.com",
            "http://user:pw@cos.ap-guangzhou.myqcloud.com",
            "http://",
        ] {
            let e = endpoint_from_url(url, B).unwrap_err();
            assert!(e.0.starts_with("invalid url="), "{url}: {e}");
        }
    }

    #[test]
    fn the_issue_example_mounts_the_region_endpoint() {
        let c = parse(
            B,
            &[
                "-ourl=http://cos.ap-guangzhou.myqcloud.com",
                "-odbglevel=info",
                "-oallow_other",
            ],
        )
        .unwrap();
        assert_eq!(c.client.endpoint, guangzhou_endpoint());
        assert_eq!(c.client.region.as_deref(), Some("ap-guangzhou"));
        assert_eq!(c.log_level.as_deref(), Some("info"));
        assert!(c.allow_other);
        assert!(c.notes.is_empty(), "{:?}", c.notes);
    }

    #[test]
    fn cosfs_options_map_to_cosmount_settings() {
        let c = parse(
            B,
            &[
                "-ourl=https://cos.ap-shanghai.myqcloud.com",
                "-o",
                "uid=1002,gid=1003,umask=022,multipart_size=5,parallel_count=4,stat_cache_expire=30",
                "-omax_stat_cache_size=500",
                "-oenable_noobj_cache",
                "-onoxattr",
                "-oretries=4",
                "-oconnect_timeout=7",
                "-oreadwrite_timeout=9",
                "-otmpdir=/var/tmp/cosfs-staging",
                "-omax_prefetch_bytes=2097152",
                "-ostorage_class=standard_ia",
                "-ononempty",
                "-oro",
                "-odbglevel=dbg",
            ],
        )
        .unwrap();
        let d = &c.fs.defaults;
        assert_eq!((d.uid, d.gid), (1002, 1003));
        assert_eq!((d.file_mode, d.dir_mode), (0o644, 0o755));
        assert_eq!(c.fs.part_size, 5 << 20);
        assert_eq!(c.fs.max_concurrency, 4);
        assert_eq!(c.fs.metadata_ttl, Some(Duration::from_secs(30)));
        assert_eq!(c.fs.negative_ttl, Duration::from_secs(30));
        assert_eq!(c.fs.cache_entries, 500);
        assert!(!c.fs.xattrs);
        assert!(c.fs.read_only);
        assert!(c.nonempty);
        assert_eq!(
            c.fs.cache_dir,
            std::path::PathBuf::from("/var/tmp/cosfs-staging")
        );
        assert_eq!(c.fs.prefetch.max_window, 2 << 20);
        assert_eq!(c.client.retry.max_attempts, 5);
        assert_eq!(c.client.connect_timeout, Duration::from_secs(7));
        assert_eq!(c.client.read_timeout, Duration::from_secs(9));
        assert_eq!(c.client.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(c.log_level.as_deref(), Some("debug"));
        assert_eq!(c.client.region.as_deref(), Some("ap-shanghai"));
    }

    #[test]
    fn default_permission_and_umask_give_the_default_modes() {
        let modes = |args: &[&str]| {
            let c = parse(B, args).unwrap();
            (c.fs.defaults.file_mode, c.fs.defaults.dir_mode)
        };
        let url = "-ourl=http://127.0.0.1:9";
        assert_eq!(modes(&[url, "-odefault_permission=640"]), (0o640, 0o640));
        assert_eq!(
            modes(&[url, "-odefault_permission=777", "-oumask=027"]),
            (0o750, 0o750)
        );
        assert_eq!(modes(&[url, "-oumask=0077"]), (0o600, 0o700));
        // cosmount's own flags win.
        assert_eq!(
            modes(&[url, "--file-mode", "0600", "-oumask=022"]),
            (0o600, 0o755)
        );
        let e = parse(B, &[url, "-oumask=999"]).unwrap_err();
        assert!(e.0.contains("octal"), "{e}");
    }

    #[test]
    fn noobj_cache_remembers_missing_names_as_long_as_attributes() {
        let negative = |args: &[&str]| parse(B, args).unwrap().fs.negative_ttl;
        let url = "-ourl=http://127.0.0.1:9";
        assert_eq!(
            negative(&[url, "-oenable_noobj_cache"]),
            Duration::from_secs(1)
        );
        assert_eq!(
            negative(&[url, "-oenable_noobj_cache", "-ostat_cache_expire=5"]),
            Duration::from_secs(5)
        );
        assert_eq!(negative(&[url]), Duration::ZERO);
    }

    #[test]
    fn dbglevel_takes_cosfs_names() {
        let url = "-ourl=http://127.0.0.1:9";
        for (v, want) in [
            ("crit", "error"),
            ("err", "error"),
            ("warn", "warn"),
            ("info", "info"),
            ("dbg", "debug"),
            ("DEBUG", "debug"),
        ] {
            let c = parse(B, &[url, &format!("-odbglevel={v}")]).unwrap();
            assert_eq!(c.log_level.as_deref(), Some(want), "{v}");
        }
        let e = parse(B, &[url, "-odbglevel=loud"]).unwrap_err();
        assert!(e.0.contains("dbglevel=loud"), "{e}");
        let c = parse(B, &[url, "-d"]).unwrap();
        assert_eq!(c.log_level.as_deref(), Some("info"));
        assert!(!c.foreground);
        let c = parse(B, &[url, "-d", "-d"]).unwrap();
        assert_eq!(c.log_level.as_deref(), Some("debug"));
        assert!(c.foreground);
        let c = parse(B, &[url, "-s"]).unwrap();
        assert_eq!(c.notes.len(), 1);
        let e = parse(B, &[url, "-u"]).unwrap_err();
        assert!(e.0.contains("cleanup-uploads"), "{e}");
    }

    #[test]
    fn endpoint_without_a_scheme_is_cosfs_s_region() {
        let c = parse(B, &["-oendpoint=ap-shanghai"]).unwrap();
        assert_eq!(c.client.endpoint, Endpoint::Region("ap-shanghai".into()));
        let c = parse(B, &["-oendpoint=http://127.0.0.1:9"]).unwrap();
        assert_eq!(
            c.client.endpoint,
            Endpoint::Url("http://127.0.0.1:9".parse().unwrap())
        );
    }

    #[test]
    fn bucket_argument_forms() {
        let url = "-ourl=http://127.0.0.1:9";
        let c = parse(&format!("cosfs#{B}"), &[url]).unwrap();
        assert_eq!(c.bucket, B);
        assert_eq!(c.fs.prefix, "");
        let c = parse(&format!("{B}:/my-dir/sub"), &[url]).unwrap();
        assert_eq!(c.bucket, B);
        assert_eq!(c.fs.prefix, "my-dir/sub/");
        let c = parse("1250000000:examplebucket:/my-dir", &[url]).unwrap();
        assert_eq!(c.bucket, B);
        assert_eq!(c.fs.prefix, "my-dir/");
        let c = parse("1250000000:examplebucket", &[url]).unwrap();
        assert_eq!(c.bucket, B);
        for bad in [
            format!("{B}:my-dir"),
            format!("{B}:"),
            "a:b:c:d".to_string(),
        ] {
            let e = parse(&bad, &[url]).unwrap_err();
            assert!(e.0.contains("bucket argument"), "{bad}: {e}");
        }
        // The bucket of the url is the normalised one.
        let c = parse(
            "cosfs#examplebucket-1250000000",
            &["-ourl=http://cos.ap-guangzhou.myqcloud.com"],
        )
        .unwrap();
        assert_eq!(c.client.endpoint, guangzhou_endpoint());
    }

    fn key_file(dir: &Path, name: &str, contents: &[u8]) -> String {
        let p = dir.join(name);
        std::fs::write(&p, contents).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p.to_str().unwrap().to_string()
    }

    #[test]
    fn use_sse_forms() {
        let url = "-ourl=http://127.0.0.1:9";
        let sse = |args: &[&str]| parse(B, &[&[url], args].concat()).map(|c| c.client.sse);
        assert_eq!(sse(&["-ouse_sse"]).unwrap(), Sse::Cos);
        assert_eq!(sse(&["-ouse_sse=1"]).unwrap(), Sse::Cos);
        assert_eq!(sse(&["-ouse_sse=0"]).unwrap(), Sse::None);
        assert_eq!(
            sse(&["-ouse_sse=kmsid"]).unwrap(),
            Sse::Kms {
                key_id: None,
                context: None
            }
        );
        assert_eq!(
            sse(&["-ouse_sse=k:key-1"]).unwrap(),
            Sse::Kms {
                key_id: Some("key-1".into()),
                context: None
            }
        );

        let dir = tempfile::tempdir().unwrap();
        let raw = [b'k'; 32];
        let expected = Sse::Customer(SseCKey::from_bytes(&raw).into());
        // One key a line; the first writes, the others (here a base64 one) only read.
        let two = key_file(
            dir.path(),
            "two",
            b"# keys\nkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        );
        let c = parse(B, &[url, &format!("-ouse_sse=custom:{two}")]).unwrap();
        assert_eq!(
            c.client.sse,
            Sse::Customer(
                SseCKeys::new(vec![
                    SseCKey::from_bytes(&raw),
                    SseCKey::from_bytes(&[0; 32])
                ])
                .unwrap()
            )
        );
        assert!(c.notes.is_empty(), "{:?}", c.notes);
        let one = key_file(dir.path(), "one", &raw);
        assert_eq!(sse(&[&format!("-ouse_sse=c:{one}")]).unwrap(), expected);
        assert_eq!(sse(&[&format!("-ouse_sse={one}")]).unwrap(), expected);
        assert_eq!(
            sse(&["-ouse_sse=custom", &format!("-oload_sse_c={one}")]).unwrap(),
            expected
        );
        let e = sse(&["-ouse_sse=custom"]).unwrap_err();
        assert!(e.0.contains("use_sse=custom:FILE"), "{e}");
        let e = sse(&[&format!("-oload_sse_c={one}")]).unwrap_err();
        assert!(e.0.contains("load_sse_c is not supported"), "{e}");
        let short = key_file(dir.path(), "short", b"secret-but-short\n");
        let e = sse(&[&format!("-ouse_sse=custom:{short}")]).unwrap_err();
        assert!(e.0.contains("32 raw bytes"), "{e}");
        assert!(!e.0.contains("secret-but-short"), "{e}");
        let e = sse(&["-ouse_sse", &format!("--sse-c-key-file={one}")]).unwrap_err();
        assert!(e.0.contains("cannot be combined"), "{e}");
    }

    #[test]
    fn every_covered_option_is_accepted_with_one_line_and_every_refused_one_says_why() {
        let url = "-ourl=http://127.0.0.1:9";
        for (name, text) in COVERED {
            let c = parse(B, &[url, &format!("-o{name}")]).unwrap();
            assert_eq!(c.notes.len(), 1, "{name}");
            assert_eq!(c.notes[0].text, format!("-o {name}: {text}"));
        }
        for (name, reason) in REFUSED {
            let e = parse(B, &[url, &format!("-o{name}=x")]).unwrap_err();
            assert_eq!(
                e.0,
                format!("mount option {name} is not supported: {reason}")
            );
        }
        for (opt, expect) in [
            ("storage_class=reduced_redundancy", "S3 storage class"),
            ("use_rrs", "S3 storage class"),
            ("use_rrs=1", "S3 storage class"),
            ("default_acl=public-read", "bucket's ACL"),
            ("public_bucket=1", "anonymous"),
            ("ssl_verify_hostname=0", "verifies"),
        ] {
            let e = parse(B, &[url, &format!("-o{opt}")]).unwrap_err();
            assert!(
                e.0.contains("is not supported") && e.0.contains(expect),
                "{opt}: {e}"
            );
        }
        for opt in [
            "use_rrs=0",
            "default_acl=default",
            "public_bucket=0",
            "ssl_verify_hostname=2",
        ] {
            let c = parse(B, &[url, &format!("-o{opt}")]).unwrap();
            assert!(c.notes.is_empty(), "{opt}");
        }
        let c = parse(
            B,
            &[
                url,
                "-ouse_cache=/var/cache/cosfs",
                "-oensure_diskfree=1024",
            ],
        )
        .unwrap();
        let levels: Vec<log::Level> = c.notes.iter().map(|n| n.level).collect();
        assert_eq!(levels, [log::Level::Warn]);
        assert_eq!(
            c.data_cache,
            Some((PathBuf::from("/var/cache/cosfs"), None)),
            "use_cache is the data cache"
        );
    }
}
