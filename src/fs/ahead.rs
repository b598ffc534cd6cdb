//! Reading ahead across files. A program that reads a directory's files one after another in
//! the order of its listing (`cat dir/*`, `grep -r`, `tar c`, `cp -r` out of the mount) has the
//! next small files fetched whole, a few GETs at once, while it reads the current one: at 10 ms
//! a request, a file then costs a fraction of a round trip instead of two (the open's HEAD and
//! the read's GET).
//!
//! - What counts as "in order": a read-only open of the entry right after (or two after) the one
//!   opened before in that directory, one of the last `LISTINGS` directories the kernel listed
//!   through this mount. Two such opens in a row start it; an open elsewhere in the directory
//!   starts a new run. Each directory keeps its own run, so programs reading different
//!   directories at once do not stop each other. Nothing is fetched for a program that opens
//!   one file, or files in another order.
//! - Only files the listing shows as 1 to `MAX_FILE` bytes are fetched (by a GET of that range,
//!   kept only if it holds the whole object), `FILES` ahead of the one being opened, and the
//!   bodies wait in memory bounded by `MAX_BYTES` (least recently fetched go first).
//! - Consistency is the metadata cache's: a fetched GET counts as a HEAD made when it was sent.
//!   The open of that file uses its ETag and attributes if that is within the metadata TTL (as a
//!   cached HEAD would be), else it asks COS as usual; reads use the bytes only for the ETag the
//!   open settled on. A fetch still in flight when its file is opened is waited for, not sent
//!   again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;

use super::meta_cache::Stat;

/// Files fetched ahead of the one being opened.
pub const FILES: usize = 8;
/// Largest file fetched ahead (by the listing's size).
pub const MAX_FILE: u64 = 1 << 20;
/// Bytes of fetched files kept at most.
const MAX_BYTES: u64 = 64 << 20;
/// Directory listings remembered for their order (the most recent ones)...
const LISTINGS: usize = 16;
/// ...of at most this many entries each.
const MAX_LISTING: usize = 100_000;

/// A file fetched ahead: what the GET said (as a HEAD would) and the whole body.
pub struct Fetched {
    pub stat: Stat,
    pub etag: String,
    /// When the GET was sent.
    pub asked: Instant,
    pub body: Bytes,
}

type Fetch = Shared<BoxFuture<'static, Option<Arc<Fetched>>>>;

/// A file as a listing showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    pub name: String,
    pub size: u64,
    pub etag: String,
}

/// A run of read-only opens in a directory: the position of the last one, and how many were
/// in order so far.
type Run = (usize, u32);

/// A listing's files in order.
struct Order {
    files: Vec<ListedFile>,
    index: HashMap<String, usize>,
}

struct State {
    /// Directory prefix → its files in listing order, and its run of opens.
    listings: Vec<(String, Arc<Order>, Option<Run>)>,
    /// Key → its fetch, oldest first.
    fetched: lru::LruCache<String, (u64, Fetch)>,
    bytes: u64,
}

#[derive(Default)]
pub struct FilesAhead {
    state: Mutex<State>,
}

impl Default for State {
    fn default() -> Self {
        State {
            listings: Vec::new(),
            fetched: lru::LruCache::unbounded(),
            bytes: 0,
        }
    }
}

impl FilesAhead {
    /// Remembers the order of a complete listing of `prefix`: its files as it showed them.
    pub fn listed(&self, prefix: &str, files: Vec<ListedFile>) {
        if files.len() > MAX_LISTING {
            return;
        }
        let index = (files.iter().enumerate())
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        let order = Arc::new(Order { files, index });
        let mut st = self.state.lock();
        st.listings.retain(|(p, _, _)| p != prefix);
        st.listings.push((prefix.to_string(), order, None));
        if st.listings.len() > LISTINGS {
            st.listings.remove(0);
        }
    }

    /// A read-only open of `name` in `prefix`: when it continues an in-order run, the files to
    /// fetch now.
    pub fn opened(&self, prefix: &str, name: &str) -> Vec<ListedFile> {
        let mut st = self.state.lock();
        let Some((_, order, run)) = st.listings.iter_mut().find(|(p, _, _)| p == prefix) else {
            return Vec::new();
        };
        let order = order.clone();
        let Some(&i) = order.index.get(name) else {
            return Vec::new();
        };
        let streak = match *run {
            Some((j, _)) if i == j => return Vec::new(),
            Some((j, n)) if i > j && i <= j + 2 => n + 1,
            _ => 1,
        };
        *run = Some((i, streak));
        if streak < 2 {
            return Vec::new();
        }
        order.files[i + 1..]
            .iter()
            .take(FILES)
            .filter(|f| {
                (1..=MAX_FILE).contains(&f.size)
                    && !st.fetched.contains(&format!("{prefix}{}", f.name))
            })
            .cloned()
            .collect()
    }

    /// Records the fetch of `key` (listed as `size` bytes), started by the caller.
    pub fn started(
        &self,
        key: String,
        size: u64,
        fetch: impl Future<Output = Option<Arc<Fetched>>> + Send + 'static,
    ) {
        let fetch = fetch.boxed().shared();
        let mut st = self.state.lock();
        if let Some((old, _)) = st.fetched.put(key, (size, fetch)) {
            st.bytes -= old;
        }
        st.bytes += size;
        while st.bytes > MAX_BYTES {
            match st.fetched.pop_lru() {
                Some((_, (n, _))) => st.bytes -= n,
                None => break,
            }
        }
    }

    /// The fetch of `key`, waited for if it is still in flight.
    pub async fn wait(&self, key: &str) -> Option<Arc<Fetched>> {
        let fetch = self
            .state
            .lock()
            .fetched
            .peek(key)
            .map(|(_, f)| f.clone())?;
        fetch.await
    }

    /// The body of `key` at `etag`, if it was fetched ahead (waited for if still in flight).
    pub async fn body(&self, key: &str, etag: &str) -> Option<Bytes> {
        self.wait(key)
            .await
            .filter(|f| f.etag == etag)
            .map(|f| f.body.clone())
    }

    /// Forgets what was fetched of `key` (the mount changed or removed it).
    pub fn forget(&self, key: &str) {
        let mut st = self.state.lock();
        if let Some((n, _)) = st.fetched.pop(key) {
            st.bytes -= n;
        }
    }

    /// Forgets `key` and every key under `prefix` (a tree renamed or removed).
    pub fn forget_tree(&self, key: &str, prefix: &str) {
        let mut st = self.state.lock();
        let doomed: Vec<String> = (st.fetched.iter())
            .map(|(k, _)| k)
            .filter(|k| *k == key || k.starts_with(prefix))
            .cloned()
            .collect();
        for k in doomed {
            if let Some((n, _)) = st.fetched.pop(&k) {
                st.bytes -= n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: Vec<ListedFile>) -> Vec<String> {
        v.into_iter().map(|f| f.name).collect()
    }

    #[test]
    fn only_opens_in_listing_order_fetch_and_only_small_files() {
        let a = FilesAhead::default();
        let files = (0..20)
            .map(|i| ListedFile {
                name: format!("f{i:02}"),
                size: if i == 5 { MAX_FILE + 1 } else { 10 },
                etag: format!("e{i}"),
            })
            .collect();
        a.listed("d/", files);
        assert!(a.opened("d/", "f00").is_empty(), "one open is no run");
        assert!(a.opened("d/", "f00").is_empty(), "the same file again");
        let next = names(a.opened("d/", "f01"));
        assert_eq!(next, ["f02", "f03", "f04", "f06", "f07", "f08", "f09"]);
        assert!(a.opened("d/", "f10").is_empty(), "a jump ends the run");
        assert!(a.opened("d/", "f13").is_empty(), "a new run starts");
        assert_eq!(
            names(a.opened("d/", "f15")).len(),
            4,
            "one skipped is still in order"
        );
        assert!(a.opened("x/", "f16").is_empty(), "a directory never listed");
        // Two programs in two directories at once keep their own runs.
        let other = (0..20)
            .map(|i| ListedFile {
                name: format!("g{i:02}"),
                size: 10,
                etag: String::new(),
            })
            .collect();
        a.listed("e/", other);
        assert!(a.opened("e/", "g00").is_empty());
        assert_eq!(names(a.opened("d/", "f16")).len(), 3, "d's run goes on");
        assert_eq!(names(a.opened("e/", "g01")).len(), 8, "e's run starts");
    }

    #[test]
    fn fetched_bodies_are_bounded_and_served_only_for_their_etag() {
        let a = FilesAhead::default();
        let fetched = |etag: &str| {
            let f = Arc::new(Fetched {
                stat: Stat::Dir(super::super::meta_cache::DirStat::probed(None)),
                etag: etag.to_string(),
                asked: Instant::now(),
                body: Bytes::from_static(b"body"),
            });
            async move { Some(f) }
        };
        let body = |k: &str, e: &str| futures::executor::block_on(a.body(k, e));
        a.started("k".into(), 4, fetched("e1"));
        let f = futures::executor::block_on(a.wait("k")).unwrap();
        assert_eq!(f.etag, "e1");
        assert_eq!(body("k", "e1").as_deref(), Some(&b"body"[..]));
        assert_eq!(body("k", "e2"), None, "another version");
        for i in 0..(MAX_BYTES / MAX_FILE) + 1 {
            a.started(format!("big{i}"), MAX_FILE, fetched("x"));
        }
        assert_eq!(body("k", "e1"), None, "the oldest went first");
        assert!(a.state.lock().bytes <= MAX_BYTES);
        a.forget("big3");
        assert!(futures::executor::block_on(a.wait("big3")).is_none());
        a.started("t/a".into(), 1, fetched("x"));
        a.started("t/b/c".into(), 1, fetched("x"));
        a.started("tt".into(), 1, fetched("x"));
        a.forget_tree("t", "t/");
        let st = a.state.lock();
        assert!(!st.fetched.contains("t/a") && !st.fetched.contains("t/b/c"));
        assert!(st.fetched.contains("tt"), "only the tree goes");
    }
}
