//! `parse_size` and `parse_duration` on arbitrary strings.
//!
//! Invariant: never panics — in particular an amount too large for the
//! result type is an `Err`, not an overflow. A plain number of bytes parses
//! to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wisp_core::units::{parse_duration, parse_size};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let size = parse_size(&s);
    let _ = parse_duration(&s);
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        assert_eq!(size.ok(), t.parse::<u64>().ok(), "{s:?}");
    }
});
