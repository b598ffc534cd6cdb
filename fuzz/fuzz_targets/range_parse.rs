//! The emulator's `Range` / `x-cos-copy-source-range` parser.
//!
//! Properties:
//! - on arbitrary header text and object size, any `Ok(Some((s, e)))` is a non-empty range
//!   inside the object: `s < e <= size` (GET computes `e - s` as the Content-Length);
//! - on well-formed `bytes=A-B`, `bytes=A-` and `bytes=-N` built from fuzz numbers, the result
//!   is exactly what RFC 7233 says (computed here in u128, so no overflow can hide).
#![no_main]

use cosmount::emulator::server::parse_range;
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;

fn check_bounds(header: &str, size: u64) -> Option<(u64, u64)> {
    match parse_range(header, size) {
        Ok(Some((s, e))) => {
            assert!(
                s < e && e <= size,
                "parse_range({header:?}, {size}) = ({s}, {e}): not a non-empty range inside the object"
            );
            Some((s, e))
        }
        Ok(None) | Err(_) => None,
    }
}

/// A number that is often near an edge: 0, 1, the size, u64::MAX.
fn number(u: &mut Unstructured, size: u64) -> ArbResult<u64> {
    Ok(match u.int_in_range(0u8..=7)? {
        0 => 0,
        1 => u64::MAX - u.int_in_range(0u64..=2)?,
        2 => size.wrapping_add(u.int_in_range(0u64..=2)?).wrapping_sub(1),
        3 => u.int_in_range(0u64..=64)?,
        _ => u.arbitrary()?,
    })
}

fn structured(u: &mut Unstructured) -> ArbResult<()> {
    let size = number(u, 100)?;
    let a = number(u, size)?;
    let b = number(u, size)?;
    let (b128, size128) = (b as u128, size as u128);
    // bytes=A-B
    let got = parse_range(&format!("bytes={a}-{b}"), size).ok().flatten();
    let want = if b < a || a >= size {
        None
    } else {
        Some((a, (b128 + 1).min(size128) as u64))
    };
    assert_eq!(got, want, "bytes={a}-{b} of {size}");
    check_bounds(&format!("bytes={a}-{b}"), size);
    // bytes=A-
    let got = parse_range(&format!("bytes={a}-"), size).ok().flatten();
    let want = (a < size).then_some((a, size));
    assert_eq!(got, want, "bytes={a}- of {size}");
    // bytes=-N (the last N bytes)
    let got = parse_range(&format!("bytes=-{b}"), size).ok().flatten();
    let want = (b > 0 && size > 0).then(|| ((size128 - b128.min(size128)) as u64, size));
    assert_eq!(got, want, "bytes=-{b} of {size}");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(mode) = u.arbitrary::<u8>() else {
        return;
    };
    if mode & 1 == 0 {
        // Free text against a small or arbitrary size.
        let size = if mode & 2 == 0 {
            u.int_in_range(0u64..=300).unwrap_or(0)
        } else {
            u.arbitrary().unwrap_or(0)
        };
        let rest = u.take_rest();
        let text = String::from_utf8_lossy(rest);
        check_bounds(&text, size);
        // The same text behind `bytes=`, so the fuzzer need not find the prefix first.
        check_bounds(&format!("bytes={text}"), size);
    } else {
        let _ = structured(&mut u);
    }
});
