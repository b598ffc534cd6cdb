//! cosbench: the baselines of `scripts/bench.sh`, done directly with cosmount's `CosClient`
//! (no FUSE), plus two small file-system drivers that run many operations in one process so
//! that process start-up does not dominate what is measured.
//!
//! ```text
//! cosbench presign METHOD KEY [SECONDS]            a pre-signed URL (query-string auth)
//! cosbench randread KEY THREADS SECONDS            random 4 KiB ranged GETs -> IOPS
//! cosbench list PREFIX                             paginated LIST, delimiter "/" -> seconds
//! cosbench put-small PREFIX N PARALLEL SIZE        N PUTs of SIZE bytes -> files/s
//! cosbench multipart KEY FILE PART_SIZE CONCURRENCY  multipart upload of FILE -> MiB/s
//! cosbench create-files DIR N PARALLEL SIZE        N std::fs::write calls in threads -> files/s
//! cosbench stat-files DIR                          stat every file twice, time the second pass
//! ```
//!
//! The COS subcommands read `COS_ENDPOINT` (e.g. `http://127.0.0.1:PORT`), `COS_BUCKET`,
//! `COS_SECRET_ID` and `COS_SECRET_KEY`. Results are one line of `name=value` pairs on stdout,
//! so a shell script can pick the figures out; sizes accept `K`, `M`, `G` suffixes (binary).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::RngExt;

use cosmount::cos::auth::{Credentials, KeyTime, SignRequest, sign};
use cosmount::cos::client::{CompletedPart, list_all};
use cosmount::cos::{
    Body, ClientConfig, CosClient, Endpoint, GetObject, ListObjects, ObjectClient, ObjectMetadata,
    PutObject,
};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

/// Key characters left as they are on the request line (as the client and the Python SDK do).
const PATH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Query values of a pre-signed URL (`;` becomes `%3B`).
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The size of one random read, as fio's `--bs=4k`.
const RANDREAD_BLOCK: u64 = 4096;

const USAGE: &str = "usage: cosbench presign METHOD KEY [SECONDS]
       cosbench randread KEY THREADS SECONDS
       cosbench list PREFIX
       cosbench put-small PREFIX N PARALLEL SIZE
       cosbench multipart KEY FILE PART_SIZE CONCURRENCY
       cosbench create-files DIR N PARALLEL SIZE
       cosbench stat-files DIR
COS subcommands read COS_ENDPOINT, COS_BUCKET, COS_SECRET_ID, COS_SECRET_KEY.";

/// Where and as whom the COS subcommands connect.
struct Env {
    endpoint: url::Url,
    bucket: String,
    secret_id: String,
    secret_key: String,
}

impl Env {
    fn from_env() -> Result<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .map_err(|_| format!("cosbench: environment variable {name} is not set"))
        };
        let endpoint: url::Url = var("COS_ENDPOINT")?
            .parse()
            .map_err(|e| format!("cosbench: COS_ENDPOINT is not a URL: {e}"))?;
        Ok(Env {
            endpoint,
            bucket: var("COS_BUCKET")?,
            secret_id: var("COS_SECRET_ID")?,
            secret_key: var("COS_SECRET_KEY")?,
        })
    }

    fn client(&self) -> Result<Arc<CosClient>> {
        let config = ClientConfig {
            bucket: self.bucket.clone(),
            endpoint: Endpoint::Url(self.endpoint.clone()),
            credentials: Credentials::new(self.secret_id.clone(), self.secret_key.clone()),
            ..Default::default()
        };
        Ok(Arc::new(CosClient::new(config)?))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("cosbench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<()> {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    match argv.as_slice() {
        ["presign", method, key] => presign(method, key, 3600),
        ["presign", method, key, secs] => presign(method, key, parse_num(secs)?),
        ["randread", key, threads, secs] => {
            runtime()?.block_on(randread(key, parse_num(threads)?, parse_num(secs)?))
        }
        ["list", prefix] => runtime()?.block_on(list(prefix)),
        ["put-small", prefix, n, parallel, size] => runtime()?.block_on(put_small(
            prefix,
            parse_num(n)?,
            parse_num(parallel)?,
            parse_size(size)?,
        )),
        ["multipart", key, file, part_size, concurrency] => runtime()?.block_on(multipart(
            key,
            Path::new(file),
            parse_size(part_size)?,
            parse_num(concurrency)?,
        )),
        ["create-files", dir, n, parallel, size] => create_files(
            Path::new(dir),
            parse_num(n)?,
            parse_num(parallel)?,
            parse_size(size)?,
        ),
        ["stat-files", dir] => stat_files(Path::new(dir)),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("bad arguments {argv:?}\n{USAGE}").into()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn parse_num<T: std::str::FromStr>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a valid number").into())
}

/// `4096`, `4K`, `8M`, `1G` (binary multiples).
fn parse_size(s: &str) -> Result<u64> {
    let (digits, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = parse_num(digits)?;
    Ok(n * mult)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// Prints a URL carrying the seven q-* fields as parameters (cos-protocol.md §2.5): only the
/// Host header is signed, with the value curl sends (`127.0.0.1:PORT`), and no parameter.
fn presign(method: &str, key: &str, secs: u64) -> Result<()> {
    let env = Env::from_env()?;
    let host = env
        .endpoint
        .host_str()
        .ok_or("COS_ENDPOINT has no host")?
        .to_string();
    let host = match env.endpoint.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    let now = now_secs();
    let key_time = KeyTime {
        start: now.saturating_sub(60),
        end: now + secs,
    };
    let path = format!("/{key}");
    let headers = [("host".to_string(), host)];
    let sig = sign(
        &env.secret_key,
        &SignRequest {
            method,
            path: &path,
            params: &[],
            headers: &headers,
        },
        key_time,
    );
    let fields = [
        ("q-sign-algorithm", "sha1".to_string()),
        ("q-ak", env.secret_id.clone()),
        ("q-sign-time", key_time.to_string()),
        ("q-key-time", key_time.to_string()),
        ("q-header-list", sig.header_list.clone()),
        ("q-url-param-list", sig.param_list.clone()),
        ("q-signature", sig.signature.clone()),
    ];
    let query: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY_ENCODE)))
        .collect();
    let base = env.endpoint.as_str().trim_end_matches('/');
    println!(
        "{base}/{}?{}",
        utf8_percent_encode(key, PATH_ENCODE),
        query.join("&")
    );
    Ok(())
}

/// `threads` tasks issue ranged GETs of 4 KiB at random aligned offsets for `secs` seconds.
async fn randread(key: &str, threads: usize, secs: u64) -> Result<()> {
    let client = Env::from_env()?.client()?;
    let size = client.head_object(key).await?.size;
    if size < RANDREAD_BLOCK {
        return Err(format!("{key} is smaller than one block").into());
    }
    let blocks = size / RANDREAD_BLOCK;
    let ops = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..threads.max(1) {
        let (client, ops, key) = (client.clone(), ops.clone(), key.to_string());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let off = rand::rng().random_range(0..blocks) * RANDREAD_BLOCK;
                let (_, body) = client
                    .get_object_bytes(GetObject::new(key.clone()).range(off, off + RANDREAD_BLOCK))
                    .await?;
                if body.len() as u64 != RANDREAD_BLOCK {
                    return Err::<(), Error>(format!("short read at {off}").into());
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed();
    let n = ops.load(Ordering::Relaxed);
    println!(
        "randread ops={n} seconds={:.3} iops={:.1}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// Every page of `prefix` with delimiter `/`, as `ls` of that directory needs them.
async fn list(prefix: &str) -> Result<()> {
    let client = Env::from_env()?.client()?;
    let start = Instant::now();
    let (mut objects, mut prefixes, mut pages) = (0usize, 0usize, 0usize);
    let mut stream = Box::pin(list_all(client, ListObjects::new(prefix).delimiter("/")));
    while let Some(page) = stream.try_next().await? {
        pages += 1;
        objects += page.objects.len();
        prefixes += page.common_prefixes.len();
    }
    println!(
        "list objects={objects} prefixes={prefixes} pages={pages} seconds={:.4}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `n` PUTs of `size` bytes (`PREFIX f000000` ...), `parallel` in flight.
async fn put_small(prefix: &str, n: usize, parallel: usize, size: u64) -> Result<()> {
    let client = Env::from_env()?.client()?;
    let body = Bytes::from(vec![b'x'; size as usize]);
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (client, body) = (client.clone(), body.clone());
            let key = format!("{prefix}f{i:06}");
            async move {
                client
                    .put_object(PutObject::new(key, Body::Bytes(body)))
                    .await
            }
        })
        .buffer_unordered(parallel.max(1))
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let elapsed = start.elapsed();
    println!(
        "put-small files={n} parallel={parallel} seconds={:.4} files_per_s={:.1}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// Uploads `file` as one multipart upload: parts of `part_size` streamed from the file, at most
/// `concurrency` in flight, then Complete (what the mount does with its staging file).
async fn multipart(key: &str, file: &Path, part_size: u64, concurrency: usize) -> Result<()> {
    let client = Env::from_env()?.client()?;
    let f = Arc::new(std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?);
    let len = f.metadata()?.len();
    if part_size == 0 {
        return Err("part size must be positive".into());
    }
    let parts = len.div_ceil(part_size).max(1);
    let start = Instant::now();
    let upload_id = client
        .create_multipart_upload(key, &ObjectMetadata::default())
        .await?;
    let uploaded: std::result::Result<Vec<CompletedPart>, _> = futures::stream::iter(0..parts)
        .map(|i| {
            let (client, f, upload_id) = (client.clone(), f.clone(), upload_id.clone());
            let offset = i * part_size;
            let body = Body::File {
                file: f,
                offset,
                len: part_size.min(len - offset),
            };
            async move {
                let number = i as u32 + 1;
                let out = client.upload_part(key, &upload_id, number, body).await?;
                Ok::<_, cosmount::cos::CosError>(CompletedPart {
                    part_number: number,
                    etag: out.etag,
                })
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await;
    let mut done = match uploaded {
        Ok(d) => d,
        Err(e) => {
            let _ = client.abort_multipart_upload(key, &upload_id).await;
            return Err(e.into());
        }
    };
    done.sort_by_key(|p| p.part_number);
    client
        .complete_multipart_upload(key, &upload_id, &done)
        .await?;
    let elapsed = start.elapsed();
    println!(
        "multipart bytes={len} parts={parts} seconds={:.4} mib_per_s={:.1}",
        elapsed.as_secs_f64(),
        mib_per_s(len, elapsed)
    );
    Ok(())
}

/// `n` files of `size` bytes written with `std::fs::write` (open, write, close) by `parallel`
/// threads taking the next index from a shared counter.
fn create_files(dir: &Path, n: u64, parallel: usize, size: u64) -> Result<()> {
    let body = Arc::new(vec![b'x'; size as usize]);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..parallel.max(1))
        .map(|_| {
            let (body, next, dir) = (body.clone(), next.clone(), dir.to_path_buf());
            std::thread::spawn(move || -> std::io::Result<()> {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok(());
                    }
                    let path = dir.join(format!("f{i:06}"));
                    std::fs::write(&path, &*body).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a writer thread panicked")??;
    }
    let elapsed = start.elapsed();
    println!(
        "create-files files={n} parallel={parallel} seconds={:.4} files_per_s={:.1}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// Lists `dir` (untimed), stats every entry once to warm the caches, then times a second pass.
fn stat_files(dir: &Path) -> Result<()> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.sort();
    if paths.is_empty() {
        return Err(format!("{} is empty", dir.display()).into());
    }
    let pass = |paths: &[PathBuf]| -> Result<Duration> {
        let start = Instant::now();
        for p in paths {
            std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(start.elapsed())
    };
    let first = pass(&paths)?;
    let second = pass(&paths)?;
    let n = paths.len() as f64;
    println!(
        "stat-files files={} first_us_per_stat={:.2} us_per_stat={:.2}",
        paths.len(),
        first.as_secs_f64() * 1e6 / n,
        second.as_secs_f64() * 1e6 / n
    );
    Ok(())
}
