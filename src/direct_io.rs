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

/// A buffer whose bytes start at an aligned address, filled up to a capacity fixed at the
/// start (so it never moves).
pub struct AlignedBuf {
    /// `buf[pad..]` are the bytes.
    buf: Vec<u8>,
    pad: usize,
    cap: usize,
}

impl AlignedBuf {
    pub fn with_capacity(cap: usize) -> Self {
        let mut buf: Vec<u8> = Vec::with_capacity(cap + ALIGN);
        let pad = buf.as_ptr().align_offset(ALIGN);
        buf.resize(pad, 0);
        AlignedBuf { buf, pad, cap }
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.pad
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
        self.buf.extend_from_slice(&data[..n]);
        n
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.pad..]
    }

    pub fn clear(&mut self) {
        self.buf.truncate(self.pad);
    }

    /// The bytes, still at their aligned address.
    pub fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from(self.buf).slice(self.pad..)
    }
}
