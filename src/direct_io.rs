//! Writing files by direct I/O (`O_DIRECT`), shared by the mount (staging files, the data
//! cache) and the emulator (received bodies). On the small VMs this runs on, copying bytes
//! into fresh page-cache pages is the slowest step of every write path (about 40% of the
//! emulator's CPU while it received an upload); a direct write skips the page cache.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Direct I/O wants buffers, offsets and lengths aligned to the device's logical block; 4 KiB
/// suits every common device.
pub const ALIGN: usize = 4096;

/// `path` opened for writing with `O_DIRECT` (None where the file system refuses it).
pub fn open(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

/// Writes `data` at `offset` of `file`: by direct I/O when `direct` (the same file opened by
/// `open`) is there and everything is aligned, else through the page cache. A direct write
/// refused by the file system falls back to the page cache.
pub fn write_at(
    file: &File,
    direct: Option<&File>,
    data: &[u8],
    offset: u64,
) -> std::io::Result<()> {
    let aligned = (data.as_ptr() as usize | data.len()) % ALIGN == 0 && offset % ALIGN as u64 == 0;
    if let (Some(d), true) = (direct, aligned) {
        match d.write_all_at(data, offset) {
            Ok(()) => return Ok(()),
            Err(e) => log::debug!("direct write refused ({e}); writing through the page cache"),
        }
    }
    file.write_all_at(data, offset)
}

/// Most bytes `write_most_direct` copies into aligned memory at once.
const COPY_CHUNK: usize = 8 << 20;

thread_local! {
    /// Aligned memory, reused by each thread that writes unaligned bytes directly.
    static BOUNCE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes `bytes` at `offset` (aligned) of `file`, as much as possible by direct I/O: straight
/// from `bytes` when they are in aligned memory, else through a reused aligned buffer; the
/// unaligned end (a file's last bytes) goes through the page cache.
pub fn write_most_direct(
    file: &File,
    direct: Option<&File>,
    bytes: &[u8],
    offset: u64,
) -> std::io::Result<()> {
    let body = bytes.len() - bytes.len() % ALIGN;
    match direct {
        Some(d) if body > 0 && bytes.as_ptr().align_offset(ALIGN) == 0 => {
            write_at(file, Some(d), &bytes[..body], offset)?;
        }
        Some(d) if body > 0 => BOUNCE.with_borrow_mut(|buf| {
            if buf.len() < COPY_CHUNK + ALIGN {
                *buf = vec![0u8; COPY_CHUNK + ALIGN];
            }
            let pad = buf.as_ptr().align_offset(ALIGN);
            let mut done = 0;
            while done < body {
                let n = (body - done).min(COPY_CHUNK);
                let aligned = &mut buf[pad..pad + n];
                aligned.copy_from_slice(&bytes[done..done + n]);
                write_at(file, Some(d), aligned, offset + done as u64)?;
                done += n;
            }
            Ok::<_, std::io::Error>(())
        })?,
        _ => file.write_all_at(&bytes[..body], offset)?,
    }
    if body < bytes.len() {
        file.write_all_at(&bytes[body..], offset + body as u64)?;
    }
    Ok(())
}

/// Buffers of at least this many bytes live in anonymous memory maps backed by transparent
/// huge pages, taken from and given back to a pool (`MapPool`).
const MAPPED_MIN: usize = 1 << 20;
/// A transparent huge page on x86-64 and arm64 with 4 KiB pages; maps are sized in these.
const HUGE_PAGE: usize = 2 << 20;
/// Free maps the pool keeps for reuse, in bytes; beyond this the oldest are unmapped.
const POOL_BYTES: usize = 128 << 20;

/// Big buffers (GET bodies, parts being filled, the emulator's received chunks) as anonymous
/// maps with `MADV_HUGEPAGE`, reused. Every big buffer's bytes are later pinned by the kernel
/// (a direct write, the FUSE reply, a socket send), and pinning a 2 MiB page is one step where
/// 4 KiB pages are 512; reuse keeps the kernel from zeroing fresh pages for each body.
struct MapPool {
    free: std::sync::Mutex<Vec<memmap2::MmapMut>>,
}

static POOL: MapPool = MapPool {
    free: std::sync::Mutex::new(Vec::new()),
};

impl MapPool {
    /// A map of `len` bytes (a multiple of `HUGE_PAGE`): a free one, else a new one. None if
    /// the system refuses the map (the caller then uses the heap).
    fn take(&self, len: usize) -> Option<memmap2::MmapMut> {
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            free.iter()
                .position(|m| m.len() == len)
                .map(|i| free.swap_remove(i))
        };
        if reused.is_some() {
            return reused;
        }
        let map = memmap2::MmapMut::map_anon(len).ok()?;
        // Only a hint: where transparent huge pages are off the map works with small pages.
        let _ = map.advise(memmap2::Advice::HugePage);
        Some(map)
    }

    /// Keeps `map` for reuse; the maps given longest ago make room for it (so a pool full of a
    /// size no longer asked for does not stop the sizes in use from being kept).
    fn give(&self, map: memmap2::MmapMut) {
        if map.len() > POOL_BYTES {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let mut held: usize = free.iter().map(|m| m.len()).sum();
        while held + map.len() > POOL_BYTES {
            held -= free.remove(0).len();
        }
        free.push(map);
    }
}

/// A pool map, back to the pool when dropped: a buffer being filled, then the owner of the
/// `Bytes` it became (back when the last slice goes).
struct Lent {
    /// Always Some until dropped.
    map: Option<memmap2::MmapMut>,
    len: usize,
}

impl Lent {
    fn as_mut(&mut self) -> &mut [u8] {
        self.map.as_mut().map_or(&mut [], |m| &mut m[..])
    }
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        self.map.as_ref().map_or(&[], |m| &m[..self.len])
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(m) = self.map.take() {
            POOL.give(m);
        }
    }
}

enum Store {
    /// `buf[pad..]` are the bytes.
    Heap {
        buf: Vec<u8>,
        pad: usize,
    },
    Map(Lent),
}

/// A buffer whose bytes start at an aligned address, filled up to a capacity fixed at the
/// start (so it never moves). From `MAPPED_MIN` up it is a pooled huge-page map.
pub struct AlignedBuf {
    store: Store,
    cap: usize,
}

impl AlignedBuf {
    pub fn with_capacity(cap: usize) -> Self {
        if cap >= MAPPED_MIN {
            if let Some(map) = POOL.take(cap.next_multiple_of(HUGE_PAGE)) {
                return AlignedBuf {
                    store: Store::Map(Lent {
                        map: Some(map),
                        len: 0,
                    }),
                    cap,
                };
            }
        }
        let mut buf: Vec<u8> = Vec::with_capacity(cap + ALIGN);
        let pad = buf.as_ptr().align_offset(ALIGN);
        buf.resize(pad, 0);
        AlignedBuf {
            store: Store::Heap { buf, pad },
            cap,
        }
    }

    pub fn len(&self) -> usize {
        match &self.store {
            Store::Heap { buf, pad } => buf.len() - pad,
            Store::Map(lent) => lent.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room left before the capacity.
    pub fn room(&self) -> usize {
        self.cap - self.len()
    }

    /// Appends at most `room()` bytes of `data`; returns how many.
    pub fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        match &mut self.store {
            Store::Heap { buf, .. } => buf.extend_from_slice(&data[..n]),
            Store::Map(lent) => {
                let at = lent.len;
                lent.as_mut()[at..at + n].copy_from_slice(&data[..n]);
                lent.len += n;
            }
        }
        n
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.store {
            Store::Heap { buf, pad } => &buf[*pad..],
            Store::Map(lent) => lent.as_ref(),
        }
    }

    pub fn clear(&mut self) {
        match &mut self.store {
            Store::Heap { buf, pad } => buf.truncate(*pad),
            Store::Map(lent) => lent.len = 0,
        }
    }

    /// The bytes, still at their aligned address.
    pub fn into_bytes(self) -> bytes::Bytes {
        match self.store {
            Store::Heap { buf, pad } => bytes::Bytes::from(buf).slice(pad..),
            Store::Map(lent) => bytes::Bytes::from_owner(lent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill_in_pieces(cap: usize, seed: usize) -> (AlignedBuf, Vec<u8>) {
        let data: Vec<u8> = (0..cap).map(|i| ((i + seed) * 7 % 251) as u8).collect();
        let mut buf = AlignedBuf::with_capacity(cap);
        assert!(buf.is_empty());
        for piece in data.chunks(100_003) {
            assert_eq!(buf.fill(piece), piece.len());
        }
        assert_eq!(buf.room(), 0);
        assert_eq!(buf.fill(b"more"), 0, "a full buffer took more bytes");
        (buf, data)
    }

    #[test]
    fn small_and_mapped_buffers_hold_what_was_filled_at_an_aligned_address() {
        for cap in [10_000, MAPPED_MIN, 3 << 20, 8 << 20] {
            let (buf, data) = fill_in_pieces(cap, 0);
            assert!(buf.bytes() == data.as_slice(), "cap {cap}");
            assert_eq!(buf.bytes().as_ptr() as usize % ALIGN, 0, "cap {cap}");
            let bytes = buf.into_bytes();
            assert!(bytes == data, "cap {cap}");
            assert_eq!(bytes.as_ptr() as usize % ALIGN, 0, "cap {cap}");
        }
    }

    #[test]
    fn a_reused_map_starts_empty_and_outlives_no_slice() {
        let (buf, data) = fill_in_pieces(4 << 20, 0);
        let slice = buf.into_bytes().slice(1000..2000);
        // The map is still lent (a slice holds it): a new buffer cannot be handed the same one.
        let (again, _) = fill_in_pieces(4 << 20, 1);
        assert!(slice == data[1000..2000], "a live slice was overwritten");
        drop(again);
        drop(slice);
        let mut reused = AlignedBuf::with_capacity(4 << 20);
        assert!(reused.is_empty() && reused.bytes().is_empty());
        reused.fill(b"fresh");
        assert_eq!(reused.bytes(), b"fresh");
        reused.clear();
        assert!(reused.is_empty());
    }
}
