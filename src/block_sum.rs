//! XXH3-64 (seed 0) checksums of a body's pieces, computed whole or as the bytes arrive: the
//! data cache stores one per block, and a GET can compute them while the CPU still holds each
//! chunk it copies (hashing a body afterwards reads it all back from memory).

use std::hash::Hasher;

use twox_hash::XxHash3_64;

/// The checksum of `bytes`.
pub fn xxh3(bytes: &[u8]) -> u64 {
    XxHash3_64::oneshot(bytes)
}

/// The checksums of `bytes`' consecutive pieces of `piece` bytes (the last may be shorter):
/// what `PieceSums` gives for a body it is fed whole.
pub fn of_pieces(bytes: &[u8], piece: usize) -> Vec<u64> {
    bytes.chunks(piece).map(xxh3).collect()
}

/// The checksums of consecutive pieces of `piece` bytes of a stream (the last may be shorter),
/// fed in chunks of any size.
pub struct PieceSums {
    piece: usize,
    hasher: XxHash3_64,
    /// Bytes of the current piece hashed so far.
    filled: usize,
    sums: Vec<u64>,
}

impl PieceSums {
    pub fn new(piece: usize) -> Self {
        assert!(piece > 0, "pieces of no bytes");
        PieceSums {
            piece,
            hasher: XxHash3_64::with_seed(0),
            filled: 0,
            sums: Vec::new(),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = data.len().min(self.piece - self.filled);
            self.hasher.write(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == self.piece {
                self.end_piece();
            }
        }
    }

    fn end_piece(&mut self) {
        let done = std::mem::replace(&mut self.hasher, XxHash3_64::with_seed(0));
        self.sums.push(done.finish());
        self.filled = 0;
    }

    /// The sums, the last (shorter) piece's included.
    pub fn finish(mut self) -> Vec<u64> {
        if self.filled > 0 {
            self.end_piece();
        }
        self.sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_fed_in_any_chunks_are_those_of_each_piece() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let whole = of_pieces(&data, 4096);
        assert_eq!(whole, data.chunks(4096).map(xxh3).collect::<Vec<_>>());
        assert_eq!(whole.len(), 3);
        for chunk in [1, 100, 4095, 4096, 4097, 9999, 10_000] {
            let mut s = PieceSums::new(4096);
            for c in data.chunks(chunk) {
                s.update(c);
            }
            assert_eq!(s.finish(), whole, "chunks of {chunk}");
        }
        assert!(PieceSums::new(8).finish().is_empty());
    }
}
