//! Lines for containerd's log. containerd copies what a shim writes to the
//! `log` FIFO of its bundle into its own log, so a shim writes logrus-style
//! lines there (`time=… level=… msg=…`), as Go shims do. The daemon's logger
//! formats with [`line`]; the launcher writes its one failure with
//! [`to_bundle`] (its stderr reaches only the error `ctr` prints).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::SystemTime;

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

/// `t` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (ISO 8601 / RFC 3339, UTC,
/// nanoseconds: what logrus writes and containerd parses).
pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Iso8601::DEFAULT)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

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
