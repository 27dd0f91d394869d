//! Lines for containerd's log. containerd copies what a shim writes to the
//! `log` FIFO of its bundle into its own log, so a shim writes logrus-style
//! lines there (`time=… level=… msg=…`), as Go shims do. The daemon's logger
//! formats with [`line`]; the launcher writes its one failure with
//! [`to_bundle`] (its stderr reaches only the error `ctr` prints).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// One log line, newline included: `time="<RFC 3339, UTC>" level=<level>
/// msg="<msg, quoted>"`.
pub fn line(level: &str, msg: &str) -> String {
    format!(
        "time=\"{}\" level={level} msg=\"{}\"\n",
        rfc3339(SystemTime::now()),
        msg.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

/// Write `msg` to `bundle/log` when containerd reads it; quietly nothing
/// otherwise (no FIFO, no reader, a full pipe).
pub fn to_bundle(bundle: &Path, level: &str, msg: &str) {
    let fifo = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(bundle.join("log"));
    if let Ok(mut f) = fifo {
        let _ = f.write_all(line(level, msg).as_bytes());
    }
}

/// `t` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since the epoch to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |s: u64, n: u32| rfc3339(UNIX_EPOCH + Duration::new(s, n));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            at(1_764_782_915, 294_961_713),
            "2025-12-03T17:28:35.294961713Z"
        );
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn messages_are_quoted() {
        let l = line("error", "a \"b\"\nc\\d");
        assert!(
            l.ends_with(" level=error msg=\"a \\\"b\\\"\\nc\\\\d\"\n"),
            "{l}"
        );
        assert!(l.starts_with("time=\""), "{l}");
    }
}
