//! The metadata cache: what is known about each path (file, directory, or missing), each entry
//! with the time it was learnt. Entries expire after `--metadata-ttl` (missing ones after
//! `--negative-ttl`); the cache is an LRU bounded in entries. Own writes update it at once.
//!
//! Listings give a file's size, ETag and Last-Modified but not its user metadata; such entries
//! are "listing-grade" (`meta: None`). When a listing repeats an entry for the same object version
//! (same ETag and Last-Modified) whose metadata a HEAD already read, the metadata is kept.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;
use parking_lot::Mutex;

use super::attrs::{Kind, MetaAttrs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub etag: String,
    pub last_modified: SystemTime,
    /// User-metadata attributes; `None` when only a listing has been seen.
    pub meta: Option<MetaAttrs>,
}

impl FileStat {
    pub fn kind(&self) -> Kind {
        self.meta
            .as_ref()
            .map(MetaAttrs::object_kind)
            .unwrap_or(Kind::File)
    }

    /// Same object version: same ETag and Last-Modified to the second (HTTP dates and COS
    /// listings carry whole seconds; an ETag alone survives a metadata-only copy).
    fn same_version(&self, other: &FileStat) -> bool {
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        self.etag == other.etag && secs(self.last_modified) == secs(other.last_modified)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirStat {
    /// The `dir/` marker's metadata and Last-Modified, when a marker exists and was read.
    pub marker: Option<(MetaAttrs, SystemTime)>,
    /// Whether the marker was looked for; a listing alone does not say.
    pub probed: bool,
}

impl DirStat {
    pub fn probed(marker: Option<(MetaAttrs, SystemTime)>) -> Self {
        DirStat {
            marker,
            probed: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stat {
    File(FileStat),
    Dir(DirStat),
}

impl Stat {
    pub fn kind(&self) -> Kind {
        match self {
            Stat::File(f) => f.kind(),
            Stat::Dir(_) => Kind::Dir,
        }
    }
}

enum Known {
    Found(Stat),
    Missing,
    /// Forgotten on purpose (an own change whose outcome is not known here): answers nothing,
    /// but keeps the time, so older answers still in flight cannot come back.
    Invalidated,
}

struct Entry {
    known: Known,
    /// When the knowledge was current: the start of the request that brought it.
    at: Instant,
}

pub struct MetaCache {
    lru: Mutex<LruCache<String, Entry>>,
    /// `None`: entries never expire (`--metadata-ttl indefinite`).
    ttl: Option<Duration>,
    negative_ttl: Duration,
}

/// A cache lookup's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    Miss,
    Missing,
    Found(Stat),
}

impl MetaCache {
    pub fn new(capacity: usize, ttl: Option<Duration>, negative_ttl: Duration) -> Self {
        MetaCache {
            lru: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity.max(1)).expect("non-zero"),
            )),
            ttl,
            negative_ttl,
        }
    }

    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    pub fn negative_ttl(&self) -> Duration {
        self.negative_ttl
    }

    pub fn get(&self, key: &str) -> Cached {
        let mut lru = self.lru.lock();
        let Some(e) = lru.get(key) else {
            return Cached::Miss;
        };
        let age = e.at.elapsed();
        match &e.known {
            Known::Invalidated => Cached::Miss,
            Known::Missing if age < self.negative_ttl => Cached::Missing,
            Known::Found(s) if self.ttl.is_none_or(|t| age < t) => Cached::Found(s.clone()),
            _ => Cached::Miss,
        }
    }

    /// Whether the last thing known of `key`, however old, is that it is a file: a lookup
    /// that revalidates it need not ask for a directory marker of the same name.
    pub fn was_file(&self, key: &str) -> bool {
        self.lru
            .lock()
            .peek(key)
            .is_some_and(|e| matches!(e.known, Known::Found(Stat::File(_))))
    }

    /// Whether `key` was found missing less than `window` ago, whatever the negative TTL: for a
    /// create-type call right after the lookup that found the name free.
    pub fn missing_within(&self, key: &str, window: Duration) -> bool {
        self.lru
            .lock()
            .peek(key)
            .is_some_and(|e| matches!(e.known, Known::Missing) && e.at.elapsed() < window)
    }

    /// Stores what a request started at `observed` learnt, unless something newer is known
    /// (a listing that began before an own write finished must not undo it).
    pub fn insert_observed(&self, key: &str, stat: Stat, observed: Instant) {
        let mut lru = self.lru.lock();
        let current = lru.peek(key);
        if current.is_some_and(|e| e.at > observed) {
            return;
        }
        let stat = match stat {
            Stat::File(mut f) if f.meta.is_none() => {
                if let Some(Entry {
                    known: Known::Found(Stat::File(old)),
                    ..
                }) = current
                    && old.same_version(&f)
                {
                    f.meta = old.meta.clone();
                }
                Stat::File(f)
            }
            Stat::Dir(d) if !d.probed => match current {
                Some(Entry {
                    known: Known::Found(Stat::Dir(old)),
                    at,
                }) if old.probed && self.ttl.is_none_or(|t| at.elapsed() < t) => {
                    Stat::Dir(old.clone())
                }
                _ => Stat::Dir(d),
            },
            other => other,
        };
        lru.put(
            key.to_string(),
            Entry {
                known: Known::Found(stat),
                at: observed,
            },
        );
    }

    /// Stores what is true now (an own, completed change).
    pub fn insert(&self, key: &str, stat: Stat) {
        self.insert_observed(key, stat, Instant::now());
    }

    pub fn insert_missing_observed(&self, key: &str, observed: Instant) {
        let mut lru = self.lru.lock();
        if lru.peek(key).is_some_and(|e| e.at > observed) {
            return;
        }
        lru.put(
            key.to_string(),
            Entry {
                known: Known::Missing,
                at: observed,
            },
        );
    }

    pub fn insert_missing(&self, key: &str) {
        self.insert_missing_observed(key, Instant::now());
    }

    pub fn remove(&self, key: &str) {
        self.lru.lock().put(
            key.to_string(),
            Entry {
                known: Known::Invalidated,
                at: Instant::now(),
            },
        );
    }

    /// Forgets `key` and everything under `key/`.
    pub fn remove_tree(&self, key: &str) {
        let mut lru = self.lru.lock();
        let under = format!("{key}/");
        let now = Instant::now();
        for (k, e) in lru.iter_mut() {
            if k == key || k.starts_with(&under) || key.is_empty() {
                e.known = Known::Invalidated;
                e.at = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(etag: &str, meta: Option<MetaAttrs>) -> Stat {
        Stat::File(FileStat {
            size: 1,
            etag: etag.into(),
            last_modified: SystemTime::UNIX_EPOCH,
            meta,
        })
    }

    #[test]
    fn entries_expire_and_missing_ones_sooner() {
        let c = MetaCache::new(
            10,
            Some(Duration::from_millis(200)),
            Duration::from_millis(1),
        );
        c.insert("a", file("e", None));
        c.insert_missing("b");
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(c.get("a"), Cached::Found(_)));
        assert_eq!(c.get("b"), Cached::Miss);
        let forever = MetaCache::new(10, None, Duration::from_secs(1));
        forever.insert("a", file("e", None));
        assert!(matches!(forever.get("a"), Cached::Found(_)));
    }

    #[test]
    fn listing_keeps_metadata_of_the_same_version_only() {
        let c = MetaCache::new(10, Some(Duration::from_secs(10)), Duration::from_secs(1));
        let meta = MetaAttrs {
            mode: Some(0o100600),
            ..Default::default()
        };
        c.insert("a", file("e1", Some(meta.clone())));
        c.insert("a", file("e1", None));
        assert_eq!(c.get("a"), Cached::Found(file("e1", Some(meta))));
        c.insert("a", file("e2", None));
        assert_eq!(c.get("a"), Cached::Found(file("e2", None)));
    }

    #[test]
    fn an_older_answer_never_replaces_newer_knowledge() {
        let c = MetaCache::new(10, Some(Duration::from_secs(10)), Duration::from_secs(10));
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        c.insert("a", file("new", None));
        c.insert_observed("a", file("old", None), before);
        assert_eq!(c.get("a"), Cached::Found(file("new", None)));
        c.insert_missing_observed("a", before);
        assert_eq!(c.get("a"), Cached::Found(file("new", None)));
        c.remove("a");
        c.insert_observed("a", file("old", None), before);
        assert_eq!(c.get("a"), Cached::Miss, "an invalidation is newer too");
    }

    #[test]
    fn bounded_and_tree_removal() {
        let c = MetaCache::new(2, None, Duration::from_secs(1));
        c.insert("d", Stat::Dir(DirStat::default()));
        c.insert("d/x", file("e", None));
        c.insert("dx", file("e", None));
        assert_eq!(c.get("d"), Cached::Miss, "evicted");
        c.remove_tree("d");
        assert_eq!(c.get("d/x"), Cached::Miss);
        assert!(matches!(c.get("dx"), Cached::Found(_)));
    }
}
