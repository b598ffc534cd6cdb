//! The emulator's storage: buckets of objects and multipart uploads on disk.
//!
//! Layout under the data directory, per bucket:
//! - `objects/<sha1 of key>.json`: an object's metadata, naming its data file;
//! - `data/<random id>`: object bytes, never modified once written: a file, or for an object
//!   made by Complete Multipart Upload a directory of its parts `1`, `2`, ... (hard links to
//!   the uploaded parts, so completing an upload copies no byte). A copy of an object hard-links
//!   its data the same way;
//! - `uploads/<upload id>/upload.json` and `part-<n>` / `part-<n>.json`: multipart state;
//! - `tmp/`: bytes being received.
//!
//! Every change is atomic: bytes go to `tmp/`, are renamed into `data/`, then the metadata file
//! is written to a temporary name and renamed over the old one; only then is the old data file
//! removed. A crash leaves either the old or the new object, plus garbage that the next start
//! deletes. The in-memory index (a `BTreeMap`, for ordered listings) is rebuilt from the
//! metadata files at start. SSE-C keys are never stored: only a salted HMAC of the key.
//!
//! A bucket made by PUT Bucket has a `region` file naming its region, so that it is served
//! again after a restart (buckets named by `--bucket` are served because the command line
//! says so, in the region it gives). DELETE Bucket renames the bucket's directory to a
//! `.deleted-*` name at once, then removes it; the next start removes what a crash left.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use parking_lot::{Mutex, RwLock};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Server-side encryption of a stored object, as COS records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum StoredSse {
    #[default]
    None,
    Cos,
    Kms {
        key_id: Option<String>,
        context: Option<String>,
    },
    /// SSE-C: a salt and HMAC-SHA1(salt, raw key); the key itself is never written.
    Customer {
        salt: String,
        check: String,
    },
}

impl StoredSse {
    /// The stored form of an SSE-C key.
    pub fn customer(raw_key: &[u8]) -> Self {
        let salt = random_hex(16);
        let check = key_check(&salt, raw_key);
        StoredSse::Customer { salt, check }
    }

    /// Whether `raw_key` is the key this object was written with.
    pub fn customer_key_matches(&self, raw_key: &[u8]) -> bool {
        match self {
            StoredSse::Customer { salt, check } => key_check(salt, raw_key) == *check,
            _ => false,
        }
    }

    pub fn is_customer(&self) -> bool {
        matches!(self, StoredSse::Customer { .. })
    }
}

fn key_check(salt: &str, raw_key: &[u8]) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt.as_bytes()).expect("any key length");
    mac.update(raw_key);
    hex::encode(mac.finalize().into_bytes())
}

pub fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// Headers an object keeps and returns (cos-protocol.md §3.1): content type and the standard
/// representation headers, user metadata, SSE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredHeaders {
    pub content_type: Option<String>,
    /// `cache-control`, `content-disposition`, `content-encoding`, `expires`, when given.
    pub standard: BTreeMap<String, String>,
    /// `x-cos-meta-*` with lower-cased names, prefix included.
    pub user: BTreeMap<String, String>,
    pub storage_class: Option<String>,
    pub sse: StoredSse,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Quoted.
    pub etag: String,
    /// Milliseconds since the epoch.
    pub last_modified_ms: u64,
    pub crc64: u64,
    pub headers: StoredHeaders,
    /// File (or, with `parts`, directory) name under `data/`.
    pub data: String,
    /// Sizes of the files `1`, `2`, ... in the directory `data` names, in order; empty when
    /// `data` is one file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<u64>,
}

impl ObjectMeta {
    pub fn last_modified(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_millis(self.last_modified_ms)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadMeta {
    pub key: String,
    pub upload_id: String,
    pub initiated_ms: u64,
    pub headers: StoredHeaders,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartMeta {
    pub number: u32,
    pub size: u64,
    /// Quoted hex MD5 of the part.
    pub etag: String,
    pub md5: String,
    pub crc64: u64,
}

#[derive(Debug)]
pub struct Upload {
    pub meta: UploadMeta,
    pub parts: BTreeMap<u32, PartMeta>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", random_hex(6)));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
    }
    fs::rename(&tmp, path)
}

/// Removes an object's data: a file, or a directory of parts.
fn remove_data(path: &Path) {
    if fs::remove_file(path).is_err() {
        let _ = fs::remove_dir_all(path);
    }
}

/// The file of part `i` (from 0) in the data directory `dir` of an object kept as its parts.
fn part_file(dir: &Path, i: usize) -> PathBuf {
    dir.join((i + 1).to_string())
}

/// Makes `dir` the data directory of an object kept as its parts: hard links to `parts`, in
/// order; on failure removes what it made.
fn link_parts(parts: impl IntoIterator<Item = PathBuf>, dir: &Path) -> io::Result<()> {
    fs::create_dir(dir)?;
    let linked = parts
        .into_iter()
        .enumerate()
        .try_for_each(|(i, from)| fs::hard_link(from, part_file(dir, i)));
    if linked.is_err() {
        let _ = fs::remove_dir_all(dir);
    }
    linked
}

fn key_file_name(key: &str) -> String {
    format!("{}.json", hex::encode(Sha1::digest(key.as_bytes())))
}

/// The file naming the region of a bucket made by PUT Bucket.
const REGION_FILE: &str = "region";
/// What a deleted bucket's directory is renamed to before it is removed.
const DELETED_PREFIX: &str = ".deleted-";

/// One bucket.
pub struct Bucket {
    pub name: String,
    pub region: String,
    pub created_ms: u64,
    root: PathBuf,
    objects: RwLock<BTreeMap<String, Arc<ObjectMeta>>>,
    uploads: Mutex<HashMap<String, Arc<Mutex<Upload>>>>,
}

/// Bytes received into `tmp/`, ready to become an object or a part.
pub struct Received {
    pub path: PathBuf,
    pub size: u64,
    pub md5: [u8; 16],
    pub crc64: u64,
}

/// Where new data goes before `Bucket::install` makes it an object's.
pub struct NewData {
    /// Name under `data/`, already in place.
    pub name: String,
    pub size: u64,
    pub crc64: u64,
    pub parts: Vec<u64>,
}

/// An object's bytes opened for reading: one file, or its parts in order.
pub struct ObjectFiles {
    /// Each file with the object offset it starts at.
    files: Vec<(fs::File, u64)>,
    size: u64,
}

impl crate::file_stream::ReadAt for ObjectFiles {
    fn read_exact_at(&self, mut buf: &mut [u8], mut off: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        if off + buf.len() as u64 > self.size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // The last file starting at or before `off`.
        let mut i = self.files.partition_point(|(_, start)| *start <= off) - 1;
        while !buf.is_empty() {
            let (file, start) = &self.files[i];
            let end = self.files.get(i + 1).map_or(self.size, |(_, s)| *s);
            let n = buf.len().min((end - off) as usize);
            let (head, rest) = buf.split_at_mut(n);
            FileExt::read_exact_at(file, head, off - start)?;
            buf = rest;
            off += n as u64;
            i += 1;
        }
        Ok(())
    }
}

impl Bucket {
    /// Opens (creating if needed) a bucket under `data_dir`, loading its index and deleting
    /// what an interrupted write left behind.
    pub fn open(data_dir: &Path, name: &str, region: &str) -> io::Result<Bucket> {
        let root = data_dir.join(name);
        for d in ["objects", "data", "uploads", "tmp"] {
            fs::create_dir_all(root.join(d))?;
        }
        let created_path = root.join("created");
        let created_ms = match fs::read_to_string(&created_path) {
            Ok(s) => s.trim().parse().unwrap_or_else(|_| now_ms()),
            Err(_) => {
                let now = now_ms();
                write_atomic(&created_path, now.to_string().as_bytes())?;
                now
            }
        };
        for e in fs::read_dir(root.join("tmp"))? {
            let _ = fs::remove_file(e?.path());
        }
        let mut objects = BTreeMap::new();
        let mut referenced = HashSet::new();
        for e in fs::read_dir(root.join("objects"))? {
            let path = e?.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                let _ = fs::remove_file(&path);
                continue;
            }
            let Ok(text) = fs::read(&path) else { continue };
            match serde_json::from_slice::<ObjectMeta>(&text) {
                Ok(meta) => {
                    referenced.insert(meta.data.clone());
                    objects.insert(meta.key.clone(), Arc::new(meta));
                }
                Err(err) => log::warn!("skipping unreadable metadata {}: {err}", path.display()),
            }
        }
        for e in fs::read_dir(root.join("data"))? {
            let e = e?;
            if !referenced.contains(e.file_name().to_string_lossy().as_ref()) {
                remove_data(&e.path());
            }
        }
        let mut uploads = HashMap::new();
        for e in fs::read_dir(root.join("uploads"))? {
            let dir = e?.path();
            let Ok(text) = fs::read(dir.join("upload.json")) else {
                let _ = fs::remove_dir_all(&dir);
                continue;
            };
            let Ok(meta) = serde_json::from_slice::<UploadMeta>(&text) else {
                continue;
            };
            let mut parts = BTreeMap::new();
            for p in fs::read_dir(&dir)? {
                let p = p?.path();
                let name = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                if let Some(n) = name
                    .strip_prefix("part-")
                    .and_then(|n| n.strip_suffix(".json"))
                    && let (Ok(n), Ok(text)) = (n.parse::<u32>(), fs::read(&p))
                    && let Ok(pm) = serde_json::from_slice::<PartMeta>(&text)
                {
                    parts.insert(n, pm);
                }
            }
            uploads.insert(
                meta.upload_id.clone(),
                Arc::new(Mutex::new(Upload { meta, parts })),
            );
        }
        Ok(Bucket {
            name: name.to_string(),
            region: region.to_string(),
            created_ms,
            root,
            objects: RwLock::new(objects),
            uploads: Mutex::new(uploads),
        })
    }

    /// Makes a new, empty bucket (PUT Bucket) that later starts serve again in `region`.
    pub fn create(data_dir: &Path, name: &str, region: &str) -> io::Result<Bucket> {
        let root = data_dir.join(name);
        if root.exists() {
            // Left by a bucket of that name that the command line no longer names.
            fs::remove_dir_all(&root)?;
        }
        fs::create_dir_all(&root)?;
        write_atomic(&root.join(REGION_FILE), region.as_bytes())?;
        Bucket::open(data_dir, name, region)
    }

    /// The buckets PUT Bucket made under `data_dir` (name and region), and removes what an
    /// interrupted DELETE Bucket left.
    pub fn made_by_put(data_dir: &Path) -> io::Result<Vec<(String, String)>> {
        let mut found = Vec::new();
        for e in fs::read_dir(data_dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(DELETED_PREFIX) {
                let _ = fs::remove_dir_all(e.path());
                continue;
            }
            if let Ok(region) = fs::read_to_string(e.path().join(REGION_FILE)) {
                found.push((name, region.trim().to_string()));
            }
        }
        found.sort();
        Ok(found)
    }

    /// DELETE Bucket: removes the bucket if it holds no object and no multipart upload
    /// (both index locks held, so nothing is added meanwhile). False if not empty.
    pub fn remove_if_empty(&self, data_dir: &Path) -> io::Result<bool> {
        let objects = self.objects.write();
        let uploads = self.uploads.lock();
        if !objects.is_empty() || !uploads.is_empty() {
            return Ok(false);
        }
        let gone = data_dir.join(format!("{DELETED_PREFIX}{}", random_hex(8)));
        fs::rename(&self.root, &gone)?;
        let _ = fs::remove_dir_all(&gone);
        Ok(true)
    }

    pub fn tmp_path(&self) -> PathBuf {
        self.root.join("tmp").join(random_hex(12))
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Opens the bytes of `meta`.
    pub fn open_data(&self, meta: &ObjectMeta) -> io::Result<ObjectFiles> {
        let path = self.data_dir().join(&meta.data);
        if meta.parts.is_empty() {
            let file = fs::File::open(path)?;
            return Ok(ObjectFiles {
                files: vec![(file, 0)],
                size: meta.size,
            });
        }
        let mut files = Vec::with_capacity(meta.parts.len());
        let mut start = 0;
        for (i, len) in meta.parts.iter().enumerate() {
            files.push((fs::File::open(part_file(&path, i))?, start));
            start += len;
        }
        Ok(ObjectFiles { files, size: start })
    }

    pub fn get(&self, key: &str) -> Option<Arc<ObjectMeta>> {
        self.objects.read().get(key).cloned()
    }

    /// Opens an object's bytes together with the metadata they belong to (under the index
    /// lock, so a concurrent replace cannot delete the files in between).
    pub fn open_object(&self, key: &str) -> Option<(Arc<ObjectMeta>, io::Result<ObjectFiles>)> {
        let objects = self.objects.read();
        let meta = objects.get(key)?.clone();
        let files = self.open_data(&meta);
        Some((meta, files))
    }

    /// Makes received bytes the object `key`, replacing any previous one atomically.
    pub fn commit(
        &self,
        key: &str,
        received: Received,
        etag: String,
        headers: StoredHeaders,
    ) -> io::Result<Arc<ObjectMeta>> {
        let name = random_hex(16);
        fs::rename(&received.path, self.data_dir().join(&name))?;
        let data = NewData {
            name,
            size: received.size,
            crc64: received.crc64,
            parts: Vec::new(),
        };
        self.install(key, data, etag, headers)
    }

    /// Makes data already under `data/` the object `key`, replacing any previous one
    /// atomically; the old object's data is removed after.
    pub fn install(
        &self,
        key: &str,
        data: NewData,
        etag: String,
        headers: StoredHeaders,
    ) -> io::Result<Arc<ObjectMeta>> {
        let meta = Arc::new(ObjectMeta {
            key: key.to_string(),
            size: data.size,
            etag,
            last_modified_ms: now_ms(),
            crc64: data.crc64,
            headers,
            data: data.name,
            parts: data.parts,
        });
        let json = serde_json::to_vec(&*meta).map_err(io::Error::other)?;
        let old = {
            let mut objects = self.objects.write();
            let written = write_atomic(&self.root.join("objects").join(key_file_name(key)), &json);
            if let Err(e) = written {
                remove_data(&self.data_dir().join(&meta.data));
                return Err(e);
            }
            objects.insert(key.to_string(), meta.clone())
        };
        if let Some(old) = old {
            remove_data(&self.data_dir().join(&old.data));
        }
        Ok(meta)
    }

    /// New data under `data/` holding the same bytes as `src` of `src_bucket` (hard links:
    /// data is never modified once written). Both buckets live under one data directory.
    pub fn link_data(&self, src_bucket: &Bucket, src: &ObjectMeta) -> io::Result<NewData> {
        let name = random_hex(16);
        let from = src_bucket.data_dir().join(&src.data);
        let to = self.data_dir().join(&name);
        let linked = if src.parts.is_empty() {
            fs::hard_link(&from, &to)
        } else {
            link_parts((0..src.parts.len()).map(|i| part_file(&from, i)), &to)
        };
        linked.map(|()| NewData {
            name,
            size: src.size,
            crc64: src.crc64,
            parts: src.parts.clone(),
        })
    }

    /// New data under `data/` made of the given parts of an upload, in order (hard links, so
    /// the parts' bytes are not copied). The upload keeps its own links until it is removed.
    pub fn join_parts(&self, upload_id: &str, parts: &[PartMeta]) -> io::Result<NewData> {
        let name = random_hex(16);
        let sources = parts.iter().map(|p| self.part_path(upload_id, p.number));
        link_parts(sources, &self.data_dir().join(&name))?;
        let mut crc = 0u64;
        for (i, p) in parts.iter().enumerate() {
            crc = if i == 0 {
                p.crc64
            } else {
                crate::cos::crc64::combine(crc, p.crc64, p.size)
            };
        }
        Ok(NewData {
            name,
            size: parts.iter().map(|p| p.size).sum(),
            crc64: crc,
            parts: parts.iter().map(|p| p.size).collect(),
        })
    }

    /// Replaces only the metadata of an existing object (a Copy onto itself), keeping its bytes.
    pub fn replace_headers(
        &self,
        key: &str,
        expect_data: &str,
        headers: StoredHeaders,
    ) -> io::Result<Option<Arc<ObjectMeta>>> {
        let mut objects = self.objects.write();
        let Some(cur) = objects.get(key) else {
            return Ok(None);
        };
        if cur.data != expect_data {
            return Ok(None);
        }
        let meta = Arc::new(ObjectMeta {
            headers,
            last_modified_ms: now_ms(),
            ..(**cur).clone()
        });
        let json = serde_json::to_vec(&*meta).map_err(io::Error::other)?;
        write_atomic(&self.root.join("objects").join(key_file_name(key)), &json)?;
        objects.insert(key.to_string(), meta.clone());
        Ok(Some(meta))
    }

    /// Removes `key`; true if it existed.
    pub fn delete(&self, key: &str) -> io::Result<bool> {
        let old = {
            let mut objects = self.objects.write();
            let Some(old) = objects.remove(key) else {
                return Ok(false);
            };
            if let Err(e) = fs::remove_file(self.root.join("objects").join(key_file_name(key))) {
                objects.insert(key.to_string(), old);
                return Err(e);
            }
            old
        };
        remove_data(&self.data_dir().join(&old.data));
        Ok(true)
    }

    /// Keys (and sizes) in order, strictly after `after`, beginning with `prefix`, for listings.
    /// `visit` returns false to stop; it may return a key to skip to (inclusive lower bound).
    pub fn scan(&self, prefix: &str, after: &str, mut visit: impl FnMut(&ObjectMeta) -> ScanStep) {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let objects = self.objects.read();
        let mut lower: (std::ops::Bound<String>, bool) = if after >= prefix {
            (Excluded(after.to_string()), true)
        } else {
            (Included(prefix.to_string()), true)
        };
        loop {
            let mut next_lower = None;
            for (k, meta) in objects.range((lower.0.clone(), Unbounded)) {
                if !k.starts_with(prefix) {
                    if k.as_str() > prefix {
                        return;
                    }
                    continue;
                }
                match visit(meta) {
                    ScanStep::Continue => {}
                    ScanStep::Stop => return,
                    ScanStep::SkipTo(s) => {
                        next_lower = Some(s);
                        break;
                    }
                }
            }
            match next_lower {
                Some(s) => lower = (Included(s), lower.1),
                None => return,
            }
        }
    }

    pub fn object_count(&self) -> usize {
        self.objects.read().len()
    }

    // ---- multipart ----

    pub fn create_upload(&self, key: &str, headers: StoredHeaders) -> io::Result<String> {
        let upload_id = format!(
            "{}{}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            random_hex(20)
        );
        let dir = self.root.join("uploads").join(&upload_id);
        fs::create_dir_all(&dir)?;
        let meta = UploadMeta {
            key: key.to_string(),
            upload_id: upload_id.clone(),
            initiated_ms: now_ms(),
            headers,
        };
        write_atomic(
            &dir.join("upload.json"),
            &serde_json::to_vec(&meta).map_err(io::Error::other)?,
        )?;
        self.uploads.lock().insert(
            upload_id.clone(),
            Arc::new(Mutex::new(Upload {
                meta,
                parts: BTreeMap::new(),
            })),
        );
        Ok(upload_id)
    }

    /// The upload `id` if it exists and belongs to `key`.
    pub fn upload(&self, key: &str, id: &str) -> Option<Arc<Mutex<Upload>>> {
        let u = self.uploads.lock().get(id).cloned()?;
        if u.lock().meta.key != key {
            return None;
        }
        Some(u)
    }

    pub fn part_path(&self, upload_id: &str, n: u32) -> PathBuf {
        self.root
            .join("uploads")
            .join(upload_id)
            .join(format!("part-{n}"))
    }

    pub fn store_part(
        &self,
        upload: &Mutex<Upload>,
        n: u32,
        received: Received,
    ) -> io::Result<PartMeta> {
        let mut u = upload.lock();
        let id = u.meta.upload_id.clone();
        let md5 = hex::encode(received.md5);
        let pm = PartMeta {
            number: n,
            size: received.size,
            etag: format!("\"{md5}\""),
            md5,
            crc64: received.crc64,
        };
        fs::rename(&received.path, self.part_path(&id, n))?;
        write_atomic(
            &self
                .root
                .join("uploads")
                .join(&id)
                .join(format!("part-{n}.json")),
            &serde_json::to_vec(&pm).map_err(io::Error::other)?,
        )?;
        u.parts.insert(n, pm.clone());
        Ok(pm)
    }

    pub fn remove_upload(&self, id: &str) -> bool {
        let removed = self.uploads.lock().remove(id).is_some();
        if removed {
            let _ = fs::remove_dir_all(self.root.join("uploads").join(id));
        }
        removed
    }

    /// Uploads in (key, upload id) order.
    pub fn list_uploads(&self) -> Vec<UploadMeta> {
        let mut v: Vec<UploadMeta> = self
            .uploads
            .lock()
            .values()
            .map(|u| u.lock().meta.clone())
            .collect();
        v.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        v
    }
}

/// What a listing scan does after one entry.
pub enum ScanStep {
    Continue,
    Stop,
    /// Resume at the first key ≥ this one (used to skip past a common prefix).
    SkipTo(String),
}
