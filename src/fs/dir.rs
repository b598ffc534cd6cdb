//! Directories over a flat key space: listings with `delimiter=/`, implicit directories,
//! name validation, and readdir handles whose offsets stay stable while they are open.
//!
//! A directory `d` exists when a `d/` marker object exists or any key starts with `d/`. A
//! listing is fetched page by page as the kernel reads the directory; each page's entries are
//! appended to the handle, so an offset names the same entry for the handle's whole life.
//! Where a file `x` and a directory `x/` both exist, the directory wins (the file is hidden).

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use parking_lot::Mutex;

use super::attrs::{Ino, Kind};
use super::meta_cache::{DirStat, FileStat, Stat};
use crate::cos::client::ListPage;

/// Longest file name (bytes), as on Linux file systems.
pub const NAME_MAX: usize = 255;

/// Whether `name` can be a file name here: not empty, not `.`/`..`, no `/` or NUL, at most
/// 255 bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= NAME_MAX
        && !name.contains('/')
        && !name.contains('\0')
}

/// Remembers which keys were reported as unusable so each is warned about once. Bounded: after
/// `LIMIT` distinct keys, further ones are counted, not stored.
#[derive(Default)]
pub struct SkipLog {
    seen: Mutex<HashSet<String>>,
}

impl SkipLog {
    const LIMIT: usize = 10_000;

    pub fn skip(&self, key: &str, why: &str) {
        let mut seen = self.seen.lock();
        if seen.len() < Self::LIMIT && seen.insert(key.to_string()) {
            log::warn!("skipping key {key:?}: {why}");
        }
    }
}

#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: String,
    pub stat: Stat,
}

impl DirEntry {
    pub fn kind(&self) -> Kind {
        self.stat.kind()
    }
}

/// The next listing page, asked for while the kernel still reads the previous one: the
/// marker it continues from, when it was asked, and the request. A copy of the handle (a
/// listing kept in the cache) does not carry it; dropping it cancels the request.
#[derive(Default)]
pub struct NextPage(Option<NextPageTask>);

pub type NextPageTask = (
    String,
    std::time::Instant,
    tokio::task::JoinHandle<Result<ListPage, crate::cos::CosError>>,
);

impl NextPage {
    pub fn start(&mut self, task: NextPageTask) {
        self.0 = Some(task);
    }

    /// The request for the page after `marker`, if one is in flight.
    pub fn take_for(&mut self, marker: &str) -> Option<NextPageTask> {
        match self.0.take() {
            Some(t) if t.0 == marker => Some(t),
            Some((_, _, h)) => {
                h.abort();
                None
            }
            None => None,
        }
    }
}

impl Clone for NextPage {
    fn clone(&self) -> Self {
        NextPage(None)
    }
}

impl Drop for NextPage {
    fn drop(&mut self) {
        if let Some((_, _, h)) = &self.0 {
            h.abort();
        }
    }
}

/// An open directory: the entries seen so far and where the listing goes on.
#[derive(Clone)]
pub struct DirHandle {
    pub ino: Ino,
    /// The key prefix listed (`"a/b/"`, or the mount prefix for the root).
    pub prefix: String,
    pub entries: Vec<DirEntry>,
    index: HashMap<String, usize>,
    /// Marker for the next page; `None` before the first page.
    pub marker: Option<String>,
    pub done: bool,
    /// Names added locally (files being written, not stored yet), appended at the end.
    pub local_added: bool,
    /// When the first page was asked for (a complete listing is as old as that).
    pub started: Option<std::time::Instant>,
    pub next_page: NextPage,
}

/// Offsets: 1 is `.`, 2 is `..`, entry `i` is `i + 3`.
pub const FIRST_ENTRY_OFFSET: u64 = 3;

impl DirHandle {
    pub fn new(ino: Ino, prefix: String) -> Self {
        DirHandle {
            ino,
            prefix,
            entries: Vec::new(),
            index: HashMap::new(),
            marker: None,
            done: false,
            local_added: false,
            started: None,
            next_page: NextPage::default(),
        }
    }

    fn add(&mut self, name: String, stat: Stat) {
        match self.index.get(&name) {
            Some(&i) => {
                // `x/` after `x`: the directory wins, in the file's place.
                if matches!(stat, Stat::Dir(_)) {
                    self.entries[i].stat = stat;
                }
            }
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push(DirEntry { name, stat });
            }
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&DirEntry> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    /// Adds or replaces an entry (an own change to the directory).
    pub fn upsert(&mut self, name: String, stat: Stat) {
        match self.index.get(&name) {
            Some(&i) => self.entries[i].stat = stat,
            None => self.add(name, stat),
        }
    }

    /// Removes an entry (an own change to the directory).
    pub fn remove(&mut self, name: &str) {
        if let Some(i) = self.index.remove(name) {
            self.entries.remove(i);
            for v in self.index.values_mut() {
                if *v > i {
                    *v -= 1;
                }
            }
        }
    }

    /// Adds a locally created entry unless the listing already has it.
    pub fn add_local(&mut self, name: String, stat: Stat) {
        if !self.index.contains_key(&name) {
            self.add(name, stat);
        }
    }

    /// Takes one listing page: returns the (full key, stat) pairs learnt, for the cache.
    pub fn absorb(&mut self, page: ListPage, skips: &SkipLog) -> Vec<(String, Stat)> {
        let mut learnt = Vec::new();
        let mut items: Vec<(String, Option<FileStat>)> = page
            .common_prefixes
            .into_iter()
            .map(|p| (p, None))
            .collect();
        items.extend(page.objects.into_iter().map(|o| {
            (
                o.key,
                Some(FileStat {
                    size: o.size,
                    etag: o.etag,
                    last_modified: o.last_modified,
                    meta: None,
                }),
            )
        }));
        items.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, file) in items {
            let Some(rest) = key.strip_prefix(&self.prefix) else {
                continue;
            };
            let (name, is_dir) = match &file {
                None => (rest.strip_suffix('/').unwrap_or(rest), true),
                Some(_) => (rest, false),
            };
            if !is_dir && name.is_empty() {
                continue; // the directory's own marker
            }
            if !valid_name(name) {
                let why = if name.len() > NAME_MAX {
                    "a path segment longer than 255 bytes"
                } else {
                    "it contains an empty, `.` or `..` segment"
                };
                skips.skip(&key, why);
                continue;
            }
            let stat = match file {
                Some(f) => Stat::File(f),
                None => Stat::Dir(DirStat::default()),
            };
            learnt.push((key.trim_end_matches('/').to_string(), stat.clone()));
            self.add(name.to_string(), stat);
        }
        self.marker = page.next_marker;
        if !page.is_truncated {
            self.done = true;
        }
        learnt
    }
}

/// Complete listings of recently listed directories, so that a repeated `ls` and lookups of
/// names a directory does not have need no request while the listing is fresh (the metadata
/// TTL for listings, the negative TTL for absent names). The mount's own changes update them.
/// Bounded in total entries; least recently used directories go first.
pub struct ListingCache {
    lru: lru::LruCache<String, (DirHandle, std::time::Instant)>,
    entries: usize,
}

/// Entries kept in all cached listings together (a few hundred bytes each).
pub const LISTING_CACHE_ENTRIES: usize = 200_000;

impl Default for ListingCache {
    fn default() -> Self {
        ListingCache {
            lru: lru::LruCache::unbounded(),
            entries: 0,
        }
    }
}

impl ListingCache {
    /// Stores a complete listing of `prefix` made by a request started at `asked`.
    pub fn store(&mut self, prefix: &str, listing: &DirHandle, asked: std::time::Instant) {
        if listing.entries.len() > LISTING_CACHE_ENTRIES / 4 {
            return;
        }
        if let Some((old, _)) = self.lru.pop(prefix) {
            self.entries -= old.entries.len();
        }
        self.entries += listing.entries.len();
        self.lru.put(prefix.to_string(), (listing.clone(), asked));
        while self.entries > LISTING_CACHE_ENTRIES {
            match self.lru.pop_lru() {
                Some((_, (old, _))) => self.entries -= old.entries.len(),
                None => break,
            }
        }
    }

    /// The listing of `prefix` if it is younger than `max_age` (`None`: no limit).
    pub fn fresh(
        &mut self,
        prefix: &str,
        max_age: Option<std::time::Duration>,
    ) -> Option<&DirHandle> {
        let (d, at) = self.lru.get(prefix)?;
        if max_age.is_some_and(|m| at.elapsed() >= m) {
            return None;
        }
        Some(d)
    }

    /// Applies an own change to a cached listing.
    pub fn update(&mut self, prefix: &str, name: &str, stat: Option<Stat>) {
        if let Some((d, _)) = self.lru.peek_mut(prefix) {
            let before = d.entries.len();
            match stat {
                Some(s) => d.upsert(name.to_string(), s),
                None => d.remove(name),
            }
            self.entries = self.entries + d.entries.len() - before;
        }
    }

    /// Forgets a listing (and, with `tree`, every listing under it).
    pub fn forget(&mut self, prefix: &str, tree: bool) {
        let doomed: Vec<String> = self
            .lru
            .iter()
            .map(|(k, _)| k)
            .filter(|k| *k == prefix || (tree && k.starts_with(prefix)))
            .cloned()
            .collect();
        for k in doomed {
            if let Some((old, _)) = self.lru.pop(&k) {
                self.entries -= old.entries.len();
            }
        }
    }
}

/// A directory's attributes need a time; implicit directories have none, so they show the
/// mount's start time (stable, unlike "now").
pub fn implicit_dir_time() -> SystemTime {
    static START: std::sync::OnceLock<SystemTime> = std::sync::OnceLock::new();
    *START.get_or_init(SystemTime::now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cos::client::ObjectSummary;

    fn obj(key: &str) -> ObjectSummary {
        ObjectSummary {
            key: key.into(),
            size: 1,
            etag: "\"e\"".into(),
            last_modified: SystemTime::UNIX_EPOCH,
            storage_class: None,
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("a b"));
        assert!(!valid_name(""));
        assert!(!valid_name(".."));
        assert!(!valid_name(&"x".repeat(256)));
        assert!(valid_name(&"x".repeat(255)));
    }

    #[test]
    fn pages_merge_with_directories_winning() {
        let skips = SkipLog::default();
        let mut h = DirHandle::new(1, "d/".into());
        let learnt = h.absorb(
            ListPage {
                common_prefixes: vec![],
                objects: vec![obj("d/"), obj("d/a"), obj("d/x")],
                is_truncated: true,
                next_marker: Some("d/x".into()),
            },
            &skips,
        );
        assert_eq!(learnt.len(), 2, "the marker itself is not an entry");
        h.absorb(
            ListPage {
                common_prefixes: vec!["d/x/".into(), "d/../".into(), "d//".into()],
                objects: vec![obj("d/z")],
                is_truncated: false,
                next_marker: None,
            },
            &skips,
        );
        let names: Vec<_> = h
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.kind()))
            .collect();
        assert_eq!(
            names,
            vec![("a", Kind::File), ("x", Kind::Dir), ("z", Kind::File)]
        );
        assert!(h.done);
    }
}
