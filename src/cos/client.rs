//! The `ObjectClient` trait (COS API verbs) and `CosClient`, its implementation over reqwest.
//!
//! Each method builds one request description, and `CosClient::run` signs it afresh, sends it,
//! turns error statuses (and the 200-with-`<Error>` of Copy and Complete) into `CosError`, and
//! retries as `retry.rs` decides. Request bodies are replayable (`Body`), so a retry can send
//! them again; response bodies of GET are streamed to the caller. The client knows nothing of
//! files; SSE headers come from the client's `Sse` (sse.rs) per request kind.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::auth::Credentials;
use super::dialect::{Api, Outgoing, Payload, S3_DEFAULT_REGION};
use super::error::{CosError, ServiceError, code_for_status};
use super::retry::{RetryPolicy, Retryable, classify};
use super::sse::{Sse, SseRequest};
use super::xml;

/// Object keys go on the request line percent-encoded except for `/` and the unreserved
/// characters, as the Python SDK does (`quote(key, safe='/-_.~')`, cos-protocol.md §1).
const PATH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Query values are encoded the way the signature encodes them (`%20` for a space).
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The largest single PUT or Copy COS accepts (§4).
pub const MAX_SINGLE_UPLOAD: u64 = 5 * 1024 * 1024 * 1024;
/// The smallest part except the last (§4).
pub const MIN_PART_SIZE: u64 = 1024 * 1024;
/// Part numbers run 1..=10000 (§4).
pub const MAX_PARTS: u32 = 10_000;
/// DELETE Multiple takes at most this many keys (§3.5).
pub const MAX_DELETE_KEYS: usize = 1000;

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `https://<bucket>.cos.<region>.myqcloud.com`.
    Region(String),
    /// A base URL used as is (a custom domain, a proxy, the emulator).
    Url(url::Url),
    /// The region's own host names on the wire (`<bucket>.cos.<region>.myqcloud.com`, GET
    /// Service at `service.cos.myqcloud.com`), every connection made to `via` instead (its
    /// scheme, address and port): what the Python SDK's `IP=`/`Port=` mode does. A mount of
    /// every bucket reaches an emulator or a proxy this way, each bucket under its own region.
    RegionVia { region: String, via: url::Url },
}

impl Endpoint {
    /// The URL a request for `bucket` goes to, as a person would write it (for messages).
    pub fn describe(&self, bucket: &str) -> String {
        match self {
            Endpoint::Url(u) => u.to_string(),
            Endpoint::Region(r) => format!("https://{bucket}.cos.{r}.myqcloud.com"),
            Endpoint::RegionVia { region, via } => {
                format!("{bucket}.cos.{region}.myqcloud.com via {via}")
            }
        }
    }
}

/// Everything a `CosClient` needs. `Default` gives sensible timeouts and retries; bucket,
/// endpoint and credentials must be set.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `name-appid`.
    pub bucket: String,
    pub endpoint: Endpoint,
    /// Region, used for the copy-source host (`<bucket>.cos.<region>.myqcloud.com`) when the
    /// endpoint is a URL; the emulator only reads the bucket label from it.
    pub region: Option<String>,
    pub credentials: Credentials,
    pub sse: Sse,
    pub retry: RetryPolicy,
    /// Time to establish a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest silence while waiting for response headers or body bytes; a stalled server is
    /// cut after this, not waited on forever.
    pub read_timeout: Duration,
    /// Idle connections kept per host; enough for every request the mount runs at once.
    pub pool_size: usize,
    /// `x-cos-storage-class` of the objects this client writes (PUT, Initiate, Copy); `None`:
    /// COS's default (STANDARD).
    pub storage_class: Option<String>,
    /// The dialect spoken (dialect.rs): COS's own API, or S3's.
    pub api: Api,
    /// S3: the bucket goes in the path (`http://host/bucket/key`), not the host name. Always so
    /// for an endpoint whose host is an IP address.
    pub path_style: bool,
}

/// COS's storage classes (cos-protocol.md §3.3).
pub const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "STANDARD_IA",
    "ARCHIVE",
    "DEEP_ARCHIVE",
    "INTELLIGENT_TIERING",
    "MAZ_STANDARD",
    "MAZ_STANDARD_IA",
    "MAZ_INTELLIGENT_TIERING",
];

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bucket: String::new(),
            endpoint: Endpoint::Region("ap-guangzhou".into()),
            region: None,
            credentials: Credentials::new("", ""),
            sse: Sse::None,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            pool_size: 128,
            storage_class: None,
            api: Api::Cos,
            path_style: false,
        }
    }
}

/// A request body that can be sent again on retry.
#[derive(Clone)]
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// `len` bytes of `file` from `offset`, read in chunks while sending.
    File {
        file: Arc<std::fs::File>,
        offset: u64,
        len: u64,
    },
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            Body::File { offset, len, .. } => write!(f, "Body::File({len} bytes at {offset})"),
        }
    }
}

/// Chunk size when streaming a file body: large enough that the per-chunk cost vanishes.
const FILE_CHUNK: u64 = 1024 * 1024;

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn into_reqwest(self) -> reqwest::Body {
        match self {
            Body::Empty => reqwest::Body::from(Bytes::new()),
            Body::Bytes(b) => reqwest::Body::from(b),
            Body::File { file, offset, len } => reqwest::Body::wrap_stream(
                crate::file_stream::file_range(file, offset, len, FILE_CHUNK),
            ),
        }
    }
}

/// User-visible object metadata sent with PUT, Initiate and a Copy with `Replaced`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMetadata {
    pub content_type: Option<String>,
    /// `x-cos-meta-<name>` values, names lower-case without the prefix.
    pub user: BTreeMap<String, String>,
    /// `x-cos-storage-class` to write with (`None`: the client's configured class, else COS's
    /// STANDARD). Taken from HEAD, so a copy or rewrite keeps the object's class.
    pub storage_class: Option<String>,
}

/// What HEAD (or a GET's headers) says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// Quoted, as COS sends it.
    pub etag: String,
    pub last_modified: SystemTime,
    pub content_type: Option<String>,
    pub user: BTreeMap<String, String>,
    pub crc64: Option<u64>,
    /// `x-cos-server-side-encryption` as echoed (`AES256`, `cos/kms`), if any.
    pub sse: Option<String>,
    /// True when the object is SSE-C encrypted (the customer-algorithm header was echoed).
    pub sse_customer: bool,
    /// `x-cos-storage-class` (COS sends it only when not STANDARD).
    pub storage_class: Option<String>,
    /// When the server answered (`Date`), by its clock.
    pub date: Option<SystemTime>,
}

impl ObjectInfo {
    pub fn metadata(&self) -> ObjectMetadata {
        ObjectMetadata {
            content_type: self.content_type.clone(),
            user: self.user.clone(),
            storage_class: self.storage_class.clone(),
        }
    }
}

/// One entry of a listing's `Contents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: SystemTime,
    /// `StorageClass` (`None` for STANDARD).
    pub storage_class: Option<String>,
}

/// One page of GET Bucket, keys already URL-decoded.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub common_prefixes: Vec<String>,
    pub objects: Vec<ObjectSummary>,
    pub is_truncated: bool,
    /// Where the next page starts (NextMarker, else the last entry returned).
    pub next_marker: Option<String>,
}

#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListObjects {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub marker: String,
    pub max_keys: u32,
}

impl ListObjects {
    pub fn new(prefix: impl Into<String>) -> Self {
        ListObjects {
            prefix: prefix.into(),
            delimiter: None,
            marker: String::new(),
            max_keys: 1000,
        }
    }

    pub fn delimiter(mut self, d: impl Into<String>) -> Self {
        self.delimiter = Some(d.into());
        self
    }

    pub fn marker(mut self, m: impl Into<String>) -> Self {
        self.marker = m.into();
        self
    }

    pub fn max_keys(mut self, n: u32) -> Self {
        self.max_keys = n;
        self
    }
}

/// Parameters of GET Object.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GetObject {
    pub key: String,
    /// Inclusive byte range; `None` end means to the end of the object.
    pub range: Option<(u64, Option<u64>)>,
    pub if_match: Option<String>,
}

impl GetObject {
    pub fn new(key: impl Into<String>) -> Self {
        GetObject {
            key: key.into(),
            range: None,
            if_match: None,
        }
    }

    /// Bytes `start..end` (exclusive end).
    pub fn range(mut self, start: u64, end: u64) -> Self {
        self.range = Some((start, Some(end.saturating_sub(1))));
        self
    }

    pub fn range_from(mut self, start: u64) -> Self {
        self.range = Some((start, None));
        self
    }

    pub fn if_match(mut self, etag: impl Into<String>) -> Self {
        self.if_match = Some(etag.into());
        self
    }
}

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, CosError>> + Send>>;

/// A GET's answer with its body still on the wire.
pub struct GetObjectOutput {
    pub info: ObjectInfo,
    /// Offset of the first body byte.
    pub start: u64,
    pub body: ByteStream,
}

#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PutObject {
    pub key: String,
    pub body: Body,
    pub metadata: ObjectMetadata,
    pub content_md5: Option<String>,
}

impl PutObject {
    pub fn new(key: impl Into<String>, body: Body) -> Self {
        PutObject {
            key: key.into(),
            body,
            metadata: ObjectMetadata::default(),
            content_md5: None,
        }
    }

    pub fn metadata(mut self, m: ObjectMetadata) -> Self {
        self.metadata = m;
        self
    }

    /// Sends this `Content-MD5` (base64 of the binary digest).
    pub fn content_md5(mut self, md5_b64: impl Into<String>) -> Self {
        self.content_md5 = Some(md5_b64.into());
        self
    }

    /// Sends `Content-MD5` so the server rejects a corrupted body (computed here for `Bytes`).
    pub fn with_md5(mut self) -> Self {
        if let Body::Bytes(b) = &self.body {
            self.content_md5 = Some(B64.encode(Md5::digest(b)));
        }
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutput {
    pub etag: String,
    pub crc64: Option<u64>,
    /// The new object's Last-Modified as far as the response tells (`Last-Modified`, a Copy
    /// result's `LastModified`, else the response `Date`; second precision, like HEAD's).
    pub last_modified: Option<SystemTime>,
}

/// PUT Object - Copy (§3.6) within this bucket.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyObject {
    pub source_key: String,
    pub dest_key: String,
    /// `None`: `x-cos-metadata-directive: Copy`; `Some`: `Replaced` with these.
    pub metadata: Option<ObjectMetadata>,
    /// `x-cos-copy-source-If-Match`.
    pub source_if_match: Option<String>,
    /// The destination's class with the `Copy` directive (a copy drops the class unless it is
    /// sent again, cos-protocol.md rule 9); with `Replaced`, the metadata's.
    pub storage_class: Option<String>,
}

impl CopyObject {
    pub fn new(source_key: impl Into<String>, dest_key: impl Into<String>) -> Self {
        CopyObject {
            source_key: source_key.into(),
            dest_key: dest_key.into(),
            metadata: None,
            source_if_match: None,
            storage_class: None,
        }
    }

    /// Keeps (or sets) the destination's storage class.
    pub fn storage_class(mut self, class: Option<String>) -> Self {
        self.storage_class = class;
        self
    }

    pub fn replace_metadata(mut self, m: ObjectMetadata) -> Self {
        self.metadata = Some(m);
        self
    }

    pub fn source_if_match(mut self, etag: impl Into<String>) -> Self {
        self.source_if_match = Some(etag.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    pub etag: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartOutput {
    pub etag: String,
    pub crc64: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct PartsPage {
    pub parts: Vec<(u32, String, u64)>,
    pub is_truncated: bool,
    pub next_marker: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct UploadSummary {
    pub key: String,
    pub upload_id: String,
    /// As COS sends it; two formats exist (§10 item 12), see `parse_initiated`.
    pub initiated: String,
}

#[derive(Debug, Clone)]
pub struct UploadsPage {
    pub uploads: Vec<UploadSummary>,
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
}

/// One bucket of GET Service (§3.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSummary {
    pub name: String,
    /// The region, e.g. `ap-beijing`.
    pub location: String,
    /// `CreationDate` as COS sends it (ISO 8601, e.g. `2019-05-24T10:56:40Z`).
    pub creation_date: String,
}

impl BucketSummary {
    pub fn created(&self) -> Option<SystemTime> {
        parse_iso8601(&self.creation_date)
    }
}

/// The COS API verbs the rest of cosmount uses.
#[async_trait]
pub trait ObjectClient: Send + Sync + 'static {
    fn bucket(&self) -> &str;
    async fn head_bucket(&self) -> Result<(), CosError>;
    /// PUT Bucket: creates this client's bucket in its region. A retry that finds the bucket
    /// made (by the attempt before it) succeeds.
    async fn put_bucket(&self) -> Result<(), CosError>;
    /// DELETE Bucket: deletes this client's bucket, which must be empty (no objects, no
    /// incomplete multipart uploads). A retry that finds it gone succeeds.
    async fn delete_bucket(&self) -> Result<(), CosError>;
    /// GET Service: every bucket of the account (a service request; the client's own bucket
    /// plays no part).
    async fn list_buckets(&self) -> Result<Vec<BucketSummary>, CosError>;
    async fn head_object(&self, key: &str) -> Result<ObjectInfo, CosError>;
    /// GET with the body streamed. Retries cover getting the headers only.
    async fn get_object(&self, req: GetObject) -> Result<GetObjectOutput, CosError>;
    /// GET with the body collected; retried as a whole, including a broken body.
    async fn get_object_bytes(&self, req: GetObject) -> Result<(ObjectInfo, Bytes), CosError>;
    /// `get_object_bytes`, with the checksum (`block_sum::xxh3`) of each `piece` bytes of the
    /// body in turn, the last piece maybe shorter. A client that collects the body itself
    /// computes them as each chunk arrives, while the CPU still holds its bytes.
    async fn get_object_summed(
        &self,
        req: GetObject,
        piece: usize,
    ) -> Result<(ObjectInfo, Bytes, Vec<u64>), CosError> {
        let (info, body) = self.get_object_bytes(req).await?;
        let sums = crate::block_sum::of_pieces(&body, piece);
        Ok((info, body, sums))
    }
    async fn put_object(&self, req: PutObject) -> Result<PutOutput, CosError>;
    /// Deleting a key that does not exist succeeds.
    async fn delete_object(&self, key: &str) -> Result<(), CosError>;
    /// Deletes up to any number of keys (batched by 1000); returns the keys that failed.
    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, CosError>;
    async fn copy_object(&self, req: CopyObject) -> Result<PutOutput, CosError>;
    async fn list_objects(&self, req: ListObjects) -> Result<ListPage, CosError>;
    async fn create_multipart_upload(
        &self,
        key: &str,
        metadata: &ObjectMetadata,
    ) -> Result<String, CosError>;
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
    ) -> Result<PartOutput, CosError>;
    /// Upload Part - Copy of `source_key`'s bytes `start..end` (exclusive).
    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source_key: &str,
        range: Option<(u64, u64)>,
        source_if_match: Option<&str>,
    ) -> Result<PartOutput, CosError>;
    async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<PutOutput, CosError>;
    /// Aborting an upload that no longer exists succeeds.
    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), CosError>;
    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
        marker: u32,
    ) -> Result<PartsPage, CosError>;
    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        key_marker: &str,
        upload_id_marker: &str,
    ) -> Result<UploadsPage, CosError>;
}

/// Streams every page of a listing, following markers until `IsTruncated` is false.
pub fn list_all<C: ObjectClient + ?Sized>(
    client: Arc<C>,
    req: ListObjects,
) -> impl Stream<Item = Result<ListPage, CosError>> + Send {
    futures::stream::unfold(Some(req), move |state| {
        let client = client.clone();
        async move {
            let req = state?;
            match client.list_objects(req.clone()).await {
                Ok(page) => {
                    let next = match (&page.next_marker, page.is_truncated) {
                        (Some(m), true) if *m > req.marker => Some(req.clone().marker(m.clone())),
                        (_, true) => {
                            return Some((
                                Err(CosError::protocol(
                                    "listing is truncated but gives no marker past the last one",
                                )),
                                None,
                            ));
                        }
                        _ => None,
                    };
                    Some((Ok(page), next))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    })
}

/// One request, as `run` sends it.
struct Request {
    op: &'static str,
    method: Method,
    key: Option<String>,
    params: Vec<(String, String)>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Body,
    idempotent: bool,
    /// Sent to the service endpoint (GET Service), not the bucket's.
    service: bool,
}

impl Request {
    fn new(op: &'static str, method: Method, key: Option<&str>) -> Self {
        let idempotent = method != Method::POST;
        Request {
            op,
            method,
            key: key.map(str::to_string),
            params: Vec::new(),
            headers: Vec::new(),
            body: Body::Empty,
            idempotent,
            service: false,
        }
    }

    fn param(mut self, k: &str, v: impl Into<String>) -> Self {
        self.params.push((k.to_string(), v.into()));
        self
    }

    fn header(mut self, name: &str, v: HeaderValue) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("valid header name"),
            v,
        ));
        self
    }

    fn header_str(self, name: &str, v: &str) -> Result<Self, CosError> {
        let hv = HeaderValue::from_str(v).map_err(|_| {
            CosError::InvalidInput(format!("header {name} has a value that cannot be sent"))
        })?;
        Ok(self.header(name, hv))
    }

    fn sse(self, sse: &Sse, kind: SseRequest) -> Self {
        self.sse_reading(sse, kind, 0)
    }

    /// SSE headers, the object read (or copied from) opened with SSE-C key `source`.
    fn sse_reading(mut self, sse: &Sse, kind: SseRequest, source: usize) -> Self {
        for (n, v) in sse.headers_reading(kind, source) {
            self = self.header(n, v);
        }
        self
    }

    fn metadata(mut self, m: &ObjectMetadata) -> Result<Self, CosError> {
        if let Some(ct) = &m.content_type {
            self = self.header_str("content-type", ct)?;
        }
        for (k, v) in &m.user {
            self = self.header_str(&format!("x-cos-meta-{k}"), v)?;
        }
        Ok(self)
    }

    /// `x-cos-storage-class`: the object's own (`class`), else the client's configured one.
    fn storage_class(
        self,
        class: Option<&str>,
        configured: Option<&str>,
    ) -> Result<Self, CosError> {
        match class.or(configured) {
            Some(c) => self.header_str("x-cos-storage-class", c),
            None => Ok(self),
        }
    }

    fn body(mut self, b: Body) -> Self {
        self.body = b;
        self
    }
}

/// The reqwest implementation of `ObjectClient`.
pub struct CosClient {
    http: reqwest::Client,
    config: ClientConfig,
    base: url::Url,
    /// The region S3's signature names (COS's endpoint region, else `--region`, else
    /// us-east-1).
    signing_region: String,
    /// S3: the server has no ListObjectsV2 (it refused it, or answered in V1, once); list
    /// with V1.
    list_v1: std::sync::atomic::AtomicBool,
    copy_source_host: String,
    /// Where GET Service goes: `https://service.cos.myqcloud.com/` for a region endpoint, the
    /// endpoint itself for a URL (cos-protocol.md §1).
    service_base: url::Url,
    /// With several SSE-C keys: which one last opened each object (by key), so the next read
    /// of it starts with that one (`with_source_key`).
    source_keys: parking_lot::Mutex<lru::LruCache<String, usize>>,
}

/// Objects whose SSE-C key is remembered (a few dozen bytes each).
const SOURCE_KEYS_REMEMBERED: usize = 10_000;

impl fmt::Debug for CosClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosClient")
            .field("bucket", &self.config.bucket)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Where GET Service goes for every bucket of the account (cos-protocol.md §1, §3.9).
const SERVICE_HOST: &str = "service.cos.myqcloud.com";

fn check_region(r: &str) -> Result<(), CosError> {
    if r.is_empty()
        || !r
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(CosError::InvalidInput(format!("invalid region {r:?}")));
    }
    Ok(())
}

/// An endpoint URL reduced to scheme, host and port.
fn checked_endpoint(u: &url::Url) -> Result<url::Url, CosError> {
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(CosError::InvalidInput(format!(
            "endpoint must be an http:// or https:// URL, got {u}"
        )));
    }
    let mut u = u.clone();
    u.set_path("/");
    u.set_query(None);
    Ok(u)
}

/// The bucket's base URL in S3's addressing, from the host-named `base` built for COS: the
/// bucket in the path (path style, also whenever the host is an IP address), else in front of
/// the endpoint's host name (virtual host; COS's own region host names already have it).
fn s3_base(config: &ClientConfig, base: url::Url) -> Result<url::Url, CosError> {
    if config.bucket.is_empty() {
        return Ok(base);
    }
    let bad = |e: url::ParseError| CosError::InvalidInput(format!("invalid bucket: {e}"));
    let ip_host = matches!(
        base.host(),
        Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_))
    );
    let mut u = base;
    // A host already naming the bucket (cosfs's `url=` puts it there) is the service's host
    // with the bucket in front.
    let service = u.host_str().unwrap_or_default().to_string();
    let service = service
        .strip_prefix(&format!("{}.", config.bucket))
        .unwrap_or(&service);
    match &config.endpoint {
        Endpoint::Url(_) if config.path_style || ip_host => {
            if !ip_host {
                u.set_host(Some(service)).map_err(bad)?;
            }
            u.set_path(&format!("/{}/", config.bucket));
        }
        Endpoint::Url(_) => {
            let host = format!("{}.{service}", config.bucket);
            u.set_host(Some(&host)).map_err(bad)?;
        }
        Endpoint::Region(r) | Endpoint::RegionVia { region: r, .. } if config.path_style => {
            u.set_host(Some(&format!("cos.{r}.myqcloud.com")))
                .map_err(bad)?;
            u.set_path(&format!("/{}/", config.bucket));
        }
        Endpoint::Region(_) | Endpoint::RegionVia { .. } => {}
    }
    Ok(u)
}

/// Installs the ring TLS provider once per process (reqwest is built without a default one,
/// which keeps aws-lc-rs and its C build out of the dependency tree).
fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl CosClient {
    pub fn new(config: ClientConfig) -> Result<Self, CosError> {
        install_tls_provider();
        // With no bucket (a client for GET Service only), requests go to the service host.
        let bucket_host = |region: &str| {
            if config.bucket.is_empty() {
                SERVICE_HOST.to_string()
            } else {
                format!("{}.cos.{region}.myqcloud.com", config.bucket)
            }
        };
        let mut resolve = Vec::new();
        let base = match &config.endpoint {
            Endpoint::Region(r) => {
                check_region(r)?;
                url::Url::parse(&format!("https://{}/", bucket_host(r)))
                    .map_err(|e| CosError::InvalidInput(format!("invalid bucket or region: {e}")))?
            }
            Endpoint::RegionVia { region, via } => {
                check_region(region)?;
                let mut u = checked_endpoint(via)?;
                let addr = via
                    .socket_addrs(|| None)
                    .ok()
                    .and_then(|a| a.into_iter().next())
                    .ok_or_else(|| {
                        CosError::InvalidInput(format!("cannot resolve the endpoint {via}"))
                    })?;
                u.set_host(Some(&bucket_host(region))).map_err(|e| {
                    CosError::InvalidInput(format!("invalid bucket or region: {e}"))
                })?;
                resolve.push((bucket_host(region), addr));
                resolve.push((SERVICE_HOST.to_string(), addr));
                u
            }
            Endpoint::Url(u) => checked_endpoint(u)?,
        };
        let base = match config.api {
            Api::Cos => base,
            Api::S3 => s3_base(&config, base)?,
        };
        let region = match &config.endpoint {
            Endpoint::Region(r) | Endpoint::RegionVia { region: r, .. } => r.clone(),
            Endpoint::Url(_) => config
                .region
                .clone()
                .unwrap_or_else(|| "ap-guangzhou".into()),
        };
        let copy_source_host = format!("{}.cos.{}.myqcloud.com", config.bucket, region);
        let mut builder = reqwest::Client::builder();
        // `*.localhost` is loopback by definition (RFC 6761), whatever the resolver says: lets
        // an emulator be addressed by virtual host (`http://<bucket>.localhost:PORT`).
        if let Some(host) = base.host_str()
            && (host == "localhost" || host.ends_with(".localhost"))
        {
            builder = builder.resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        for (host, addr) in &resolve {
            builder = builder.resolve(host, *addr);
        }
        let http = builder
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .pool_max_idle_per_host(config.pool_size)
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("cosmount/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CosError::InvalidInput(format!("cannot build HTTP client: {e}")))?;
        let service_base = match &config.endpoint {
            Endpoint::Region(_) => {
                url::Url::parse(&format!("https://{SERVICE_HOST}/")).expect("a valid URL")
            }
            Endpoint::RegionVia { .. } => {
                let mut u = base.clone();
                u.set_host(Some(SERVICE_HOST)).expect("a valid host");
                u
            }
            Endpoint::Url(_) => base.clone(),
        };
        let signing_region = match (config.api, &config.endpoint) {
            (Api::S3, Endpoint::Url(_)) => config
                .region
                .clone()
                .unwrap_or_else(|| S3_DEFAULT_REGION.into()),
            _ => region,
        };
        Ok(CosClient {
            http,
            config,
            base,
            signing_region,
            list_v1: std::sync::atomic::AtomicBool::new(false),
            copy_source_host,
            service_base,
            source_keys: parking_lot::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(SOURCE_KEYS_REMEMBERED).expect("non-zero"),
            )),
        })
    }

    /// Runs `f`, a request that reads an SSE-C object's bytes (GET, HEAD, the source of a
    /// copy), with each of the mount's SSE-C keys in turn until one opens `key` (the object is
    /// refused with an SSE-C key error otherwise): objects written before a key rotation are
    /// read with the key they were written with. It starts with the key that opened `key` last.
    /// With one key (or no SSE-C), `f` runs once with key 0.
    async fn with_source_key<T, F, Fut>(&self, key: &str, f: F) -> Result<T, CosError>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<T, CosError>>,
    {
        let n = self.config.sse.source_keys();
        if n <= 1 {
            return f(0).await;
        }
        let first = self.source_keys.lock().get(key).copied().unwrap_or(0);
        let mut last = None;
        for i in (0..n).map(|i| (first + i) % n) {
            match f(i).await {
                Ok(v) => {
                    self.source_keys.lock().put(key.to_string(), i);
                    return Ok(v);
                }
                Err(e) if e.is_sse_key_error() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least two keys were tried"))
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    fn url_for(
        &self,
        base: &url::Url,
        key: Option<&str>,
        params: &[(String, String)],
    ) -> Result<url::Url, CosError> {
        let mut s = base.as_str().trim_end_matches('/').to_string();
        s.push('/');
        if let Some(key) = key {
            if key.is_empty() {
                return Err(CosError::InvalidInput("empty object key".into()));
            }
            s.push_str(&encode_key_path(key)?);
        }
        if !params.is_empty() {
            s.push('?');
            let q: Vec<String> = params
                .iter()
                .map(|(k, v)| {
                    let k = utf8_percent_encode(k, QUERY_ENCODE);
                    let v = utf8_percent_encode(v, QUERY_ENCODE);
                    format!("{k}={v}")
                })
                .collect();
            s.push_str(&q.join("&"));
        }
        url::Url::parse(&s).map_err(|e| CosError::InvalidInput(format!("bad URL: {e}")))
    }

    /// One attempt: sign, send, map an error status to `CosError`.
    async fn attempt(&self, req: &Request) -> Result<reqwest::Response, CosError> {
        let base = if req.service {
            &self.service_base
        } else {
            &self.base
        };
        let url = self.url_for(base, req.key.as_deref(), &req.params)?;
        let api = self.config.api;
        let mut headers = HeaderMap::new();
        for (n, v) in &req.headers {
            let (n, v) = api.outgoing(n, v);
            headers.append(n, v);
        }
        if let Some(token) = &self.config.credentials.session_token {
            let mut v = HeaderValue::from_str(token.expose()).map_err(|_| {
                CosError::InvalidInput("session token has characters that cannot be sent".into())
            })?;
            v.set_sensitive(true);
            let (n, v) = api.outgoing(&HeaderName::from_static("x-cos-security-token"), &v);
            headers.insert(n, v);
        }
        let has_body = matches!(req.method, Method::PUT | Method::POST);
        if has_body {
            headers.insert(
                http::header::CONTENT_LENGTH,
                HeaderValue::from(req.body.len()),
            );
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let in_memory = match &req.body {
            Body::Bytes(b) => Some(&b[..]),
            _ => None,
        };
        api.sign(
            &self.config.credentials,
            &self.signing_region,
            &Outgoing {
                method: req.method.as_str(),
                url: &url,
                key: req.key.as_deref(),
                params: &req.params,
                payload: Payload::of(in_memory, req.body.len()),
            },
            &mut headers,
            now,
        )
        .map_err(CosError::InvalidInput)?;

        let mut builder = self.http.request(req.method.clone(), url).headers(headers);
        if has_body {
            builder = builder.body(req.body.clone().into_reqwest());
        }
        let started = std::time::Instant::now();
        let mut resp = builder.send().await.map_err(CosError::from_reqwest)?;
        api.incoming(resp.headers_mut());
        let status = resp.status().as_u16();
        log::debug!(
            "{} /{} -> {status}, headers after {:.2} ms",
            req.method,
            req.key.as_deref().unwrap_or(""),
            started.elapsed().as_secs_f64() * 1000.0
        );
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        Err(Self::error_from_response(resp, req.method == Method::HEAD).await)
    }

    async fn error_from_response(resp: reqwest::Response, is_head: bool) -> CosError {
        let status = resp.status().as_u16();
        let header_request_id = resp
            .headers()
            .get("x-cos-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let header_code = resp
            .headers()
            .get("x-cos-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = if is_head {
            String::new()
        } else {
            match resp.bytes().await {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) => return CosError::from_reqwest(e),
            }
        };
        let parsed: Option<xml::ErrorBody> = if xml::root_name(&body) == Some("Error") {
            xml::from_str(body.trim_start()).ok()
        } else {
            None
        };
        let (code, message, request_id) = match parsed {
            Some(e) => (
                e.code,
                e.message,
                if e.request_id.is_empty() {
                    header_request_id
                } else {
                    e.request_id
                },
            ),
            None => (
                header_code.unwrap_or_else(|| code_for_status(status).to_string()),
                String::new(),
                header_request_id,
            ),
        };
        CosError::Service(ServiceError {
            status,
            code,
            message,
            request_id,
            in_ok_response: false,
        })
    }

    /// Runs `f` (one attempt) under the retry policy, logging each retry once at warn level.
    async fn with_retry<T, F, Fut>(
        &self,
        op: &str,
        what: &str,
        idempotent: bool,
        f: F,
    ) -> Result<T, CosError>
    where
        F: Fn(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, CosError>>,
    {
        let policy = &self.config.retry;
        let mut attempt = 1;
        loop {
            match f(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let verdict = classify(&e, idempotent);
                    if verdict == Retryable::No {
                        return Err(e);
                    }
                    if attempt >= policy.max_attempts {
                        if policy.max_attempts == 1 {
                            return Err(e);
                        }
                        log::warn!("{op} {what}: giving up after {attempt} attempts: {e}");
                        return Err(CosError::RetriesExhausted {
                            attempts: attempt,
                            last: Box::new(e),
                        });
                    }
                    let delay = policy.delay(attempt, verdict);
                    log::warn!(
                        "{op} {what}: retrying in {} ms (attempt {}/{}) after: {e}",
                        delay.as_millis(),
                        attempt + 1,
                        policy.max_attempts
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn run(&self, req: Request) -> Result<reqwest::Response, CosError> {
        let what = req.key.clone().unwrap_or_else(|| "/".into());
        self.with_retry(req.op, &what, req.idempotent, |_| self.attempt(&req))
            .await
    }

    /// Runs a request whose success body is XML; a 200 carrying `<Error>` is an error (and
    /// retried as §5.3 says), the body of a success is returned.
    async fn run_xml(&self, req: Request) -> Result<(HeaderMap, String), CosError> {
        let what = req.key.clone().unwrap_or_else(|| "/".into());
        self.with_retry(req.op, &what, true, |_| async {
            let resp = self.attempt(&req).await?;
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(CosError::from_reqwest)?;
            let body = String::from_utf8_lossy(&body).into_owned();
            if xml::root_name(&body) == Some("Error") {
                let e: xml::ErrorBody = xml::from_str(body.trim_start()).unwrap_or_default();
                return Err(CosError::Service(ServiceError {
                    status: 200,
                    code: e.code,
                    message: e.message,
                    request_id: e.request_id,
                    in_ok_response: true,
                }));
            }
            Ok((headers, body))
        })
        .await
    }

    /// PUT or DELETE Bucket under the retry policy; a repeated attempt whose answer is
    /// `done_code` means an earlier attempt did the work.
    async fn bucket_call(
        &self,
        op: &'static str,
        method: Method,
        done_code: &str,
    ) -> Result<(), CosError> {
        let req = Request::new(op, method, None);
        self.with_retry(op, &self.config.bucket, true, |attempt| {
            let req = &req;
            async move {
                match self.attempt(req).await {
                    Ok(_) => Ok(()),
                    Err(e) if attempt > 1 && e.code() == Some(done_code) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        })
        .await
    }

    fn copy_source(&self, key: &str) -> String {
        self.config.api.copy_source(
            &self.config.bucket,
            &self.copy_source_host,
            &utf8_percent_encode(key, PATH_ENCODE).to_string(),
        )
    }
}

/// Encodes a key for the request line. The URL parser would resolve `.`/`..` segments, so a key
/// containing one has every `/` encoded, leaving one opaque segment (cos-protocol.md §1).
fn encode_key_path(key: &str) -> Result<String, CosError> {
    if key == "." || key == ".." {
        return Err(CosError::InvalidInput(format!(
            "object key {key:?} cannot be addressed over HTTP"
        )));
    }
    let has_dot_segment = key.split('/').any(|s| s == "." || s == "..");
    let encoded = utf8_percent_encode(key, PATH_ENCODE).to_string();
    Ok(if has_dot_segment {
        encoded.replace('/', "%2F")
    } else {
        encoded
    })
}

/// GET Bucket (V1), or ListObjectsV2 (`list-type=2`, `start-after` for the marker).
fn list_request(req: &ListObjects, v2: bool) -> Request {
    let mut r = Request::new("LIST", Method::GET, None);
    if v2 {
        r = r.param("list-type", "2");
    }
    r = r.param("prefix", &req.prefix);
    if let Some(d) = &req.delimiter {
        r = r.param("delimiter", d);
    }
    if !v2 {
        r = r.param("marker", &req.marker);
    } else if !req.marker.is_empty() {
        r = r.param("start-after", &req.marker);
    }
    r.param("max-keys", req.max_keys.to_string())
        .param("encoding-type", "url")
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn crc_header(h: &HeaderMap) -> Option<u64> {
    header_str(h, "x-cos-hash-crc64ecma").and_then(|v| v.parse().ok())
}

/// The time a write response says the object was made: `Last-Modified`, else `Date`.
fn written_at(h: &HeaderMap) -> Option<SystemTime> {
    header_str(h, "last-modified")
        .or_else(|| header_str(h, "date"))
        .and_then(|v| httpdate::parse_http_date(v).ok())
}

/// Parses `2020-12-10T03:37:30.000Z` (listings) to a time.
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = time.trim_end_matches('Z');
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (h, mi, se) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let days = days_from_civil(y, mo, da);
    let secs = days * 86400 + h * 3600 + mi * 60 + se;
    if secs < 0 {
        return Some(UNIX_EPOCH);
    }
    let frac_digits: String = frac
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .take(9)
        .collect();
    let nanos = if frac_digits.is_empty() {
        0
    } else {
        frac_digits.parse::<u32>().ok()? * 10u32.pow(9 - frac_digits.len() as u32)
    };
    Some(UNIX_EPOCH + Duration::new(secs as u64, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The (year, month, day) of a day counted from 1970-01-01 (the inverse of
/// `days_from_civil`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    (year, month, day)
}

/// Formats a time as `2020-12-10T03:37:30.000Z`.
pub fn format_iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Parses the `Initiated` of List Multipart Uploads in either documented format.
pub fn parse_initiated(s: &str) -> Option<SystemTime> {
    if let Some(t) = parse_iso8601(s) {
        return Some(t);
    }
    // `Wed Jan 18 16:04:17 2017` is asctime, which httpdate parses.
    httpdate::parse_http_date(s).ok()
}

fn info_from_headers(h: &HeaderMap, size: u64) -> ObjectInfo {
    let mut user = BTreeMap::new();
    for (name, value) in h.iter() {
        if let Some(k) = name.as_str().strip_prefix("x-cos-meta-")
            && let Ok(v) = value.to_str()
        {
            user.insert(k.to_string(), v.to_string());
        }
    }
    ObjectInfo {
        size,
        etag: header_str(h, "etag").unwrap_or_default().to_string(),
        last_modified: header_str(h, "last-modified")
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .unwrap_or(UNIX_EPOCH),
        content_type: header_str(h, "content-type").map(str::to_string),
        user,
        crc64: crc_header(h),
        sse: header_str(h, "x-cos-server-side-encryption").map(str::to_string),
        sse_customer: h.contains_key("x-cos-server-side-encryption-customer-algorithm"),
        storage_class: header_str(h, "x-cos-storage-class")
            .filter(|c| !c.eq_ignore_ascii_case("STANDARD"))
            .map(str::to_string),
        date: header_str(h, "date").and_then(|v| httpdate::parse_http_date(v).ok()),
    }
}

/// Bodies at least this long are read into memory aligned for direct I/O, so the data cache
/// can write a fetched body to disk without copying it again.
const ALIGNED_BODY: u64 = 1 << 20;

/// A GET's body (of `expected` bytes by its Content-Length) as one buffer, with the sums of
/// its pieces when asked (`ObjectClient::get_object_summed`). A long one is gathered into
/// aligned memory, each chunk summed as it is copied; one longer than announced ends early
/// (the caller sees the wrong length).
async fn read_body(
    mut resp: reqwest::Response,
    expected: u64,
    piece: Option<usize>,
) -> Result<(Bytes, Vec<u64>), CosError> {
    if expected < ALIGNED_BODY {
        let body = resp.bytes().await.map_err(CosError::from_reqwest)?;
        let sums = piece.map_or_else(Vec::new, |p| crate::block_sum::of_pieces(&body, p));
        return Ok((body, sums));
    }
    let mut buf = crate::direct_io::AlignedBuf::with_capacity(expected as usize);
    let mut sums = piece.map(crate::block_sum::PieceSums::new);
    while let Some(chunk) = resp.chunk().await.map_err(CosError::from_reqwest)? {
        if chunk.len() > buf.room() {
            break;
        }
        buf.fill(&chunk);
        if let Some(s) = &mut sums {
            s.update(&chunk);
        }
    }
    let sums = sums.map_or_else(Vec::new, crate::block_sum::PieceSums::finish);
    Ok((buf.into_bytes(), sums))
}

fn content_length(h: &HeaderMap) -> u64 {
    header_str(h, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `bytes 8-14/16` → (8, 16).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.parse().ok()?, total.parse().ok()?))
}

impl CosClient {
    /// GET with the body collected (and its pieces summed, `read_body`); retried as a whole.
    async fn get_collected(
        &self,
        req: GetObject,
        piece: Option<usize>,
    ) -> Result<(ObjectInfo, Bytes, Vec<u64>), CosError> {
        let key = req.key.as_str();
        self.with_source_key(key, |k| {
            let r = self.get_request(&req, k);
            async move {
                let r = r?;
                self.with_retry("GET", key, true, |_| async {
                    let resp = self.attempt(&r).await?;
                    let (info, _) = Self::get_info(&resp);
                    let expected = content_length(resp.headers());
                    let (body, sums) = read_body(resp, expected, piece).await?;
                    if body.len() as u64 != expected {
                        return Err(CosError::Transport {
                            kind: super::error::TransportKind::Body,
                            message: format!("body ended after {} of {expected} bytes", body.len()),
                        });
                    }
                    Ok((info, body, sums))
                })
                .await
            }
        })
        .await
    }

    fn get_request(&self, req: &GetObject, source_key: usize) -> Result<Request, CosError> {
        let mut r = Request::new("GET", Method::GET, Some(&req.key)).sse_reading(
            &self.config.sse,
            SseRequest::Get,
            source_key,
        );
        if let Some((start, end)) = req.range {
            let v = match end {
                Some(e) => format!("bytes={start}-{e}"),
                None => format!("bytes={start}-"),
            };
            r = r.header_str("range", &v)?;
        }
        if let Some(etag) = &req.if_match {
            r = r.header_str("if-match", etag)?;
        }
        Ok(r)
    }

    /// PUT Object - Copy of `req`, its source opened with SSE-C key `source_key`.
    fn copy_request(&self, req: &CopyObject, source_key: usize) -> Result<Request, CosError> {
        let mut r = Request::new("COPY", Method::PUT, Some(&req.dest_key))
            .header_str("x-cos-copy-source", &self.copy_source(&req.source_key))?
            .sse_reading(&self.config.sse, SseRequest::Copy, source_key);
        let class = match &req.metadata {
            None => {
                r = r.header_str("x-cos-metadata-directive", "Copy")?;
                req.storage_class.as_deref()
            }
            Some(m) => {
                r = r
                    .header_str("x-cos-metadata-directive", "Replaced")?
                    .metadata(m)?;
                m.storage_class.as_deref()
            }
        };
        r = r.storage_class(class, self.config.storage_class.as_deref())?;
        if let Some(etag) = &req.source_if_match {
            r = r.header_str("x-cos-copy-source-If-Match", etag)?;
        }
        Ok(r)
    }

    /// One PUT Object - Copy (each SSE-C key in turn).
    async fn copy_once(&self, req: &CopyObject) -> Result<PutOutput, CosError> {
        self.with_source_key(&req.source_key, |k| {
            let r = self.copy_request(req, k);
            async move {
                let (headers, body) = self.run_xml(r?).await?;
                let res: xml::CopyResult =
                    xml::from_str(body.trim_start()).map_err(CosError::protocol)?;
                if res.etag.is_empty() {
                    return Err(CosError::protocol("Copy answered 200 without an ETag"));
                }
                Ok(PutOutput {
                    etag: res.etag,
                    crc64: crc_header(&headers),
                    last_modified: parse_iso8601(&res.last_modified)
                        .or_else(|| written_at(&headers)),
                })
            }
        })
        .await
    }

    fn get_info(resp: &reqwest::Response) -> (ObjectInfo, u64) {
        let h = resp.headers();
        if resp.status().as_u16() == 206
            && let Some((start, total)) =
                header_str(h, "content-range").and_then(parse_content_range)
        {
            return (info_from_headers(h, total), start);
        }
        (info_from_headers(h, content_length(h)), 0)
    }
}

#[async_trait]
impl ObjectClient for CosClient {
    fn bucket(&self) -> &str {
        &self.config.bucket
    }

    async fn head_bucket(&self) -> Result<(), CosError> {
        self.run(Request::new("HEAD Bucket", Method::HEAD, None))
            .await?;
        Ok(())
    }

    async fn put_bucket(&self) -> Result<(), CosError> {
        // A repeat finding the bucket made: the attempt before made it, its answer was lost.
        self.bucket_call("PUT Bucket", Method::PUT, "BucketAlreadyOwnedByYou")
            .await
    }

    async fn delete_bucket(&self) -> Result<(), CosError> {
        // A repeat finding the bucket gone: the attempt before deleted it.
        self.bucket_call("DELETE Bucket", Method::DELETE, "NoSuchBucket")
            .await
    }

    async fn list_buckets(&self) -> Result<Vec<BucketSummary>, CosError> {
        let mut req = Request::new("GET Service", Method::GET, None);
        req.service = true;
        let (_, body) = self.run_xml(req).await?;
        let r: xml::ListAllMyBucketsResult = xml::from_str(&body).map_err(CosError::protocol)?;
        Ok(r.buckets
            .bucket
            .into_iter()
            .map(|b| BucketSummary {
                name: b.name,
                location: b.location,
                creation_date: b.creation_date,
            })
            .collect())
    }

    async fn head_object(&self, key: &str) -> Result<ObjectInfo, CosError> {
        self.with_source_key(key, |k| async move {
            let req = Request::new("HEAD", Method::HEAD, Some(key)).sse_reading(
                &self.config.sse,
                SseRequest::Head,
                k,
            );
            let resp = self.run(req).await?;
            let h = resp.headers();
            Ok(info_from_headers(h, content_length(h)))
        })
        .await
    }

    async fn get_object(&self, req: GetObject) -> Result<GetObjectOutput, CosError> {
        let resp = self
            .with_source_key(&req.key, |k| {
                let r = self.get_request(&req, k);
                async move { self.run(r?).await }
            })
            .await?;
        let (info, start) = Self::get_info(&resp);
        let body = resp
            .bytes_stream()
            .map(|r| r.map_err(CosError::from_reqwest));
        Ok(GetObjectOutput {
            info,
            start,
            body: Box::pin(body),
        })
    }

    async fn get_object_bytes(&self, req: GetObject) -> Result<(ObjectInfo, Bytes), CosError> {
        let (info, body, _) = self.get_collected(req, None).await?;
        Ok((info, body))
    }

    async fn get_object_summed(
        &self,
        req: GetObject,
        piece: usize,
    ) -> Result<(ObjectInfo, Bytes, Vec<u64>), CosError> {
        self.get_collected(req, Some(piece)).await
    }

    async fn put_object(&self, req: PutObject) -> Result<PutOutput, CosError> {
        let mut r = Request::new("PUT", Method::PUT, Some(&req.key))
            .sse(&self.config.sse, SseRequest::Put)
            .metadata(&req.metadata)?
            .storage_class(
                req.metadata.storage_class.as_deref(),
                self.config.storage_class.as_deref(),
            )?;
        if let Some(md5) = &req.content_md5 {
            r = r.header_str("content-md5", md5)?;
        }
        let resp = self.run(r.body(req.body)).await?;
        Ok(PutOutput {
            etag: header_str(resp.headers(), "etag")
                .unwrap_or_default()
                .to_string(),
            crc64: crc_header(resp.headers()),
            last_modified: written_at(resp.headers()),
        })
    }

    async fn delete_object(&self, key: &str) -> Result<(), CosError> {
        match self
            .run(Request::new("DELETE", Method::DELETE, Some(key)))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, CosError> {
        let mut failed = Vec::new();
        for chunk in keys.chunks(MAX_DELETE_KEYS) {
            let body = xml::Delete {
                quiet: true,
                object: chunk
                    .iter()
                    .map(|k| xml::DeleteObject { key: k.clone() })
                    .collect(),
            }
            .to_xml();
            let md5 = B64.encode(Md5::digest(body.as_bytes()));
            let mut r = Request::new("DELETE Multiple", Method::POST, None)
                .param("delete", "")
                .header_str("content-type", "application/xml")?
                .header_str("content-md5", &md5)?
                .body(Body::Bytes(Bytes::from(body)));
            // Deleting is idempotent even though it is a POST.
            r.idempotent = true;
            let (_, text) = self.run_xml(r).await?;
            let result: xml::DeleteResult = xml::from_str(&text).map_err(CosError::protocol)?;
            failed.extend(
                result
                    .error
                    .into_iter()
                    .filter(|e| e.code != "NoSuchKey")
                    .map(|e| (e.key, format!("{}: {}", e.code, e.message))),
            );
        }
        Ok(failed)
    }

    async fn copy_object(&self, req: CopyObject) -> Result<PutOutput, CosError> {
        match self.copy_once(&req).await {
            // Some S3 stores (SeaweedFS) keep a directory marker as a directory, which they
            // cannot copy: such an (empty) object is written afresh with what a copy keeps.
            Err(e) if req.source_key.ends_with('/') && e.code() == Some("NoSuchKey") => {
                let info = match self.head_object(&req.source_key).await {
                    Ok(i)
                        if i.size == 0
                            && req.source_if_match.as_ref().is_none_or(|m| *m == i.etag) =>
                    {
                        i
                    }
                    _ => return Err(e),
                };
                let mut metadata = req.metadata.clone().unwrap_or_else(|| info.metadata());
                if req.metadata.is_none() {
                    metadata.storage_class = req.storage_class.clone();
                }
                self.put_object(PutObject::new(&req.dest_key, Body::Empty).metadata(metadata))
                    .await
            }
            r => r,
        }
    }

    async fn list_objects(&self, req: ListObjects) -> Result<ListPage, CosError> {
        use std::sync::atomic::Ordering::Relaxed;
        // S3's ListObjectsV2 where the server has it; its `start-after` is V1's `marker`.
        let mut v2 = self.config.api == Api::S3 && !self.list_v1.load(Relaxed);
        let res: xml::ListBucketResult = loop {
            let refused = match self.run_xml(list_request(&req, v2)).await {
                Ok((_, body)) => {
                    let res: xml::ListBucketResult =
                        xml::from_str(&body).map_err(CosError::protocol)?;
                    // A V1 answer to a V2 request: the server ignored `list-type` (and
                    // `start-after` with it, so the page may start anywhere).
                    if !v2 || res.key_count.is_some() {
                        break res;
                    }
                    None
                }
                Err(e) if v2 && (e.code() == Some("NotImplemented") || e.status() == Some(501)) => {
                    Some(e)
                }
                Err(e) => return Err(e),
            };
            log::info!(
                "the server has no ListObjectsV2{}; listing with V1",
                refused.map(|e| format!(" ({e})")).unwrap_or_default()
            );
            self.list_v1.store(true, Relaxed);
            v2 = false;
        };
        let encoded = res.encoding_type.as_deref() == Some("url");
        let dec = |s: &str| {
            if encoded {
                self.config.api.decode_listed(s)
            } else {
                s.to_string()
            }
        };
        let common_prefixes: Vec<String> =
            res.common_prefixes.iter().map(|p| dec(&p.prefix)).collect();
        let objects: Vec<ObjectSummary> = res
            .contents
            .iter()
            .map(|c| ObjectSummary {
                key: dec(&c.key),
                size: c.size,
                etag: c.etag.clone(),
                last_modified: parse_iso8601(&c.last_modified).unwrap_or(UNIX_EPOCH),
                storage_class: c
                    .storage_class
                    .clone()
                    .filter(|c| !c.eq_ignore_ascii_case("STANDARD")),
            })
            .collect();
        let next_marker = match res.next_marker.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => Some(dec(m)),
            None => {
                let last_obj = objects.last().map(|o| o.key.clone());
                let last_pre = common_prefixes.last().cloned();
                last_obj.max(last_pre)
            }
        };
        Ok(ListPage {
            common_prefixes,
            objects,
            is_truncated: res.is_truncated,
            next_marker,
        })
    }

    async fn create_multipart_upload(
        &self,
        key: &str,
        metadata: &ObjectMetadata,
    ) -> Result<String, CosError> {
        let r = Request::new("Initiate Multipart", Method::POST, Some(key))
            .param("uploads", "")
            .sse(&self.config.sse, SseRequest::InitiateMultipart)
            .metadata(metadata)?
            .storage_class(
                metadata.storage_class.as_deref(),
                self.config.storage_class.as_deref(),
            )?;
        let (_, body) = self.run_xml(r).await?;
        let res: xml::InitiateMultipartUploadResult =
            xml::from_str(&body).map_err(CosError::protocol)?;
        if res.upload_id.is_empty() {
            return Err(CosError::protocol(
                "Initiate Multipart Upload gave no UploadId",
            ));
        }
        Ok(res.upload_id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
    ) -> Result<PartOutput, CosError> {
        let r = Request::new("Upload Part", Method::PUT, Some(key))
            .param("partNumber", part_number.to_string())
            .param("uploadId", upload_id)
            .sse(&self.config.sse, SseRequest::UploadPart)
            .body(body);
        let resp = self.run(r).await?;
        let etag = header_str(resp.headers(), "etag")
            .unwrap_or_default()
            .to_string();
        if etag.is_empty() {
            return Err(CosError::protocol("Upload Part answered without an ETag"));
        }
        Ok(PartOutput {
            etag,
            crc64: crc_header(resp.headers()),
        })
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source_key: &str,
        range: Option<(u64, u64)>,
        source_if_match: Option<&str>,
    ) -> Result<PartOutput, CosError> {
        let mut r = Request::new("Upload Part-Copy", Method::PUT, Some(key))
            .param("partNumber", part_number.to_string())
            .param("uploadId", upload_id)
            .header_str("x-cos-copy-source", &self.copy_source(source_key))?
            .sse(&self.config.sse, SseRequest::UploadPartCopy);
        if let Some((start, end)) = range {
            r = r.header_str(
                "x-cos-copy-source-range",
                &format!("bytes={start}-{}", end.saturating_sub(1)),
            )?;
        }
        if let Some(etag) = source_if_match {
            r = r.header_str("x-cos-copy-source-If-Match", etag)?;
        }
        let (headers, body) = self.run_xml(r).await?;
        let res: xml::CopyResult = xml::from_str(body.trim_start()).map_err(CosError::protocol)?;
        if res.etag.is_empty() {
            return Err(CosError::protocol(
                "Upload Part - Copy answered without an ETag",
            ));
        }
        Ok(PartOutput {
            etag: res.etag,
            crc64: crc_header(&headers),
        })
    }

    async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<PutOutput, CosError> {
        let body = xml::CompleteMultipartUpload {
            part: parts
                .iter()
                .map(|p| xml::CompletePart {
                    part_number: p.part_number,
                    etag: p.etag.clone(),
                })
                .collect(),
        }
        .to_xml();
        let r = Request::new("Complete Multipart", Method::POST, Some(key))
            .param("uploadId", upload_id)
            .header_str("content-type", "application/xml")?
            .body(Body::Bytes(Bytes::from(body)));
        let res = self.run_xml(r).await;
        let (headers, text) = match res {
            Ok(v) => v,
            Err(e) if e.code() == Some("NoSuchUpload") => {
                // A retried Complete whose first attempt did succeed (§5.3): accept the object
                // if it is now there as a multipart object with the same number of parts.
                let info = self.head_object(key).await.map_err(|_| e.clone())?;
                let suffix = format!("-{}\"", parts.len());
                if matches!(e, CosError::RetriesExhausted { .. }) || !info.etag.ends_with(&suffix) {
                    return Err(e);
                }
                return Ok(PutOutput {
                    etag: info.etag,
                    crc64: info.crc64,
                    last_modified: Some(info.last_modified),
                });
            }
            Err(e) => return Err(e),
        };
        let res: xml::CompleteMultipartUploadResult =
            xml::from_str(text.trim_start()).map_err(CosError::protocol)?;
        if res.etag.is_empty() {
            return Err(CosError::protocol("Complete answered 200 without an ETag"));
        }
        Ok(PutOutput {
            etag: res.etag,
            crc64: crc_header(&headers),
            last_modified: written_at(&headers),
        })
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), CosError> {
        let r =
            Request::new("Abort Multipart", Method::DELETE, Some(key)).param("uploadId", upload_id);
        match self.run(r).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
        marker: u32,
    ) -> Result<PartsPage, CosError> {
        let r = Request::new("List Parts", Method::GET, Some(key))
            .param("uploadId", upload_id)
            .param("part-number-marker", marker.to_string())
            .param("max-parts", "1000");
        let (_, body) = self.run_xml(r).await?;
        let res: xml::ListPartsResult = xml::from_str(&body).map_err(CosError::protocol)?;
        Ok(PartsPage {
            parts: res
                .part
                .into_iter()
                .map(|p| (p.part_number, p.etag, p.size))
                .collect(),
            is_truncated: res.is_truncated,
            next_marker: res.next_part_number_marker,
        })
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        key_marker: &str,
        upload_id_marker: &str,
    ) -> Result<UploadsPage, CosError> {
        let r = Request::new("List Multipart Uploads", Method::GET, None)
            .param("uploads", "")
            .param("prefix", prefix)
            .param("key-marker", key_marker)
            .param("upload-id-marker", upload_id_marker)
            .param("max-uploads", "1000")
            .param("encoding-type", "url");
        let (_, body) = self.run_xml(r).await?;
        let res: xml::ListMultipartUploadsResult =
            xml::from_str(&body).map_err(CosError::protocol)?;
        Ok(UploadsPage {
            uploads: res
                .upload
                .into_iter()
                .map(|u| UploadSummary {
                    key: self.config.api.decode_listed(&u.key),
                    upload_id: u.upload_id,
                    initiated: u.initiated,
                })
                .collect(),
            is_truncated: res.is_truncated,
            next_key_marker: res
                .next_key_marker
                .map(|k| self.config.api.decode_listed(&k)),
            next_upload_id_marker: res.next_upload_id_marker,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths() {
        assert_eq!(encode_key_path("a b/c+d").unwrap(), "a%20b/c%2Bd");
        assert_eq!(encode_key_path("a/../b").unwrap(), "a%2F..%2Fb");
        assert!(encode_key_path("..").is_err());
        assert_eq!(encode_key_path("中").unwrap(), "%E4%B8%AD");
    }

    #[test]
    fn iso_times_round_trip() {
        let t = parse_iso8601("2020-12-10T03:37:30.000Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1607571450);
        assert_eq!(format_iso8601(t), "2020-12-10T03:37:30.000Z");
        assert!(parse_initiated("Wed Jan 18 16:04:17 2017").is_some());
    }

    #[test]
    fn url_never_normalises_dot_segments() {
        let c = CosClient::new(ClientConfig {
            bucket: "b-1".into(),
            endpoint: Endpoint::Url("http://127.0.0.1:9/".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
        let u = c.url_for(&c.base, Some("x/../y"), &[]).unwrap();
        assert_eq!(u.path(), "/x%2F..%2Fy");
        let u = c
            .url_for(&c.base, None, &[("prefix".into(), "a b+c".into())])
            .unwrap();
        assert_eq!(u.query(), Some("prefix=a%20b%2Bc"));
    }

    #[test]
    fn a_region_via_an_address_keeps_cos_host_names() {
        let via = |bucket: &str| {
            CosClient::new(ClientConfig {
                bucket: bucket.into(),
                endpoint: Endpoint::RegionVia {
                    region: "ap-beijing".into(),
                    via: "http://127.0.0.1:9000".parse().unwrap(),
                },
                ..Default::default()
            })
            .unwrap()
        };
        let c = via("b-1250000000");
        assert_eq!(
            c.base.as_str(),
            "http://b-1250000000.cos.ap-beijing.myqcloud.com:9000/"
        );
        assert_eq!(
            c.service_base.as_str(),
            "http://service.cos.myqcloud.com:9000/"
        );
        assert_eq!(
            c.copy_source_host,
            "b-1250000000.cos.ap-beijing.myqcloud.com"
        );
        // A client for GET Service alone has no bucket host.
        assert_eq!(
            via("").base.as_str(),
            "http://service.cos.myqcloud.com:9000/"
        );
        let region = CosClient::new(ClientConfig {
            bucket: String::new(),
            endpoint: Endpoint::Region("ap-beijing".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(region.base.as_str(), "https://service.cos.myqcloud.com/");
        assert!(
            CosClient::new(ClientConfig {
                bucket: "b-1".into(),
                endpoint: Endpoint::RegionVia {
                    region: "Bad Region".into(),
                    via: "http://127.0.0.1:9000".parse().unwrap(),
                },
                ..Default::default()
            })
            .is_err()
        );
    }
}
