//! A set of byte ranges `[start, end)`, kept merged: which bytes of a staging file are present,
//! which are dirty.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    map: BTreeMap<u64, u64>,
}

impl RangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The ranges within `[start, end)`, in order.
    pub fn within(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut pos = start;
        for (s, e) in self.gaps(start, end) {
            if pos < s {
                out.push((pos, s));
            }
            pos = e;
        }
        if pos < end {
            out.push((pos, end));
        }
        out
    }

    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        // Merge with a range starting before `start` that reaches it.
        if let Some((&ps, &pe)) = self.map.range(..=s).next_back()
            && pe >= s
        {
            s = ps;
            e = e.max(pe);
        }
        let overlapping: Vec<u64> = self.map.range(s..=e).map(|(&k, _)| k).collect();
        for k in overlapping {
            let ke = self.map.remove(&k).expect("present");
            e = e.max(ke);
        }
        self.map.insert(s, e);
    }

    pub fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let touched: Vec<(u64, u64)> = self
            .map
            .range(..end)
            .filter(|(_, e)| **e > start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touched {
            self.map.remove(&s);
            if s < start {
                self.map.insert(s, start);
            }
            if e > end {
                self.map.insert(end, e);
            }
        }
    }

    /// Whether every byte of `[start, end)` is in the set.
    pub fn contains(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        self.map
            .range(..=start)
            .next_back()
            .is_some_and(|(_, &e)| e >= end)
    }

    pub fn intersects(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return false;
        }
        self.map
            .range(..end)
            .next_back()
            .is_some_and(|(_, &e)| e > start)
    }

    /// The sub-ranges of `[start, end)` not in the set.
    pub fn gaps(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        let mut pos = start;
        let first = self.map.range(..=start).next_back().map(|(&s, &e)| (s, e));
        let iter = first
            .into_iter()
            .chain(self.map.range(start + 1..end).map(|(&s, &e)| (s, e)));
        for (s, e) in iter {
            if e <= pos {
                continue;
            }
            if s > pos {
                out.push((pos, s.min(end)));
            }
            pos = pos.max(e);
            if pos >= end {
                break;
            }
        }
        if pos < end {
            out.push((pos, end));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn basics() {
        let mut r = RangeSet::new();
        r.insert(10, 20);
        r.insert(30, 40);
        r.insert(20, 25);
        assert!(r.contains(10, 25));
        assert!(!r.contains(10, 31));
        assert_eq!(r.gaps(0, 50), vec![(0, 10), (25, 30), (40, 50)]);
        r.remove(15, 35);
        assert_eq!(r.gaps(0, 50), vec![(0, 10), (15, 35), (40, 50)]);
        assert!(r.intersects(14, 16));
        assert!(!r.intersects(15, 35));
    }

    proptest! {
        #[test]
        fn matches_a_bitmap(ops in proptest::collection::vec((any::<bool>(), 0u64..64, 0u64..64), 0..40)) {
            let mut r = RangeSet::new();
            let mut bits = [false; 64];
            for (add, a, b) in ops {
                let (s, e) = (a.min(b), a.max(b));
                if add { r.insert(s, e) } else { r.remove(s, e) }
                for bit in bits.iter_mut().take(e as usize).skip(s as usize) {
                    *bit = add;
                }
            }
            for s in 0..64u64 {
                for e in s..=64 {
                    let all = (s..e).all(|i| bits[i as usize]);
                    let any = (s..e).any(|i| bits[i as usize]);
                    prop_assert_eq!(r.contains(s, e), all);
                    prop_assert_eq!(r.intersects(s, e), any);
                    let gaps: u64 = r.gaps(s, e).iter().map(|(a, b)| b - a).sum();
                    prop_assert_eq!(gaps, (s..e).filter(|&i| !bits[i as usize]).count() as u64);
                }
            }
        }
    }
}
