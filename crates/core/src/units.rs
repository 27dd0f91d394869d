//! Human units for sizes and durations, as used by CLI flags (`128MiB`, `10s`).

use std::time::Duration;

/// Parse a byte size: `1048576`, `64KiB`, `128MiB`, `1GiB`, `10MB`, `512k`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected e.g. 128MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?}: use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} overflows"))
}

/// Parse a duration: `500ms`, `10s`, `2m`, `1500` (milliseconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 10s"))?;
    Ok(match unit {
        "" | "ms" => Duration::from_millis(n),
        "us" | "µs" => Duration::from_micros(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(
            n.checked_mul(60)
                .ok_or_else(|| format!("duration {s:?} overflows"))?,
        ),
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?}: use us, ms, s or m"
            ));
        }
    })
}

/// Format bytes for humans: `1.5 MiB`.
pub fn format_size(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes() {
        assert_eq!(parse_size("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("10").unwrap(), 10);
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert_eq!(format_size(1536), "1.5 KiB");
    }
    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("1h").is_err());
    }
    #[test]
    fn duration_overflow_is_an_error() {
        // Found by the `units` fuzz target: `n * 60` overflowed (a panic in
        // debug builds, a silently wrapped duration in release builds).
        let e = parse_duration("444673709051144672m").unwrap_err();
        assert!(e.contains("overflows"), "{e}");
        assert_eq!(
            parse_duration(&format!("{}m", u64::MAX / 60)).unwrap(),
            Duration::from_secs(u64::MAX / 60 * 60)
        );
        assert!(parse_duration(&format!("{}s", u64::MAX)).is_ok());
        assert!(parse_size(&format!("{}GiB", u64::MAX)).is_err());
    }
}
