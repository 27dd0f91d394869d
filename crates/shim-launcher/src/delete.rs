//! `delete`: containerd runs `<shim> delete` in the bundle after every
//! disconnect from a shim, and when a shim died. Release what the container
//! held (a live daemon has done so already) and report it killed.

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// SIGKILL: the status `delete` reports (the task can't have exited cleanly
/// if containerd has to ask the binary).
const SIGKILL: u32 = 9;

/// Unmount the bundle's `rootfs` and say what `delete` answers.
pub fn delete(bundle: &Path) -> DeleteResponse {
    unmount(&bundle.join("rootfs"));
    response()
}

/// `delete`'s answer: pid 0, exit status 137, exited now.
pub fn response() -> DeleteResponse {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    DeleteResponse {
        pid: 0,
        exit_status: 128 + SIGKILL,
        exited_at: MessageField::some(Timestamp {
            seconds: now.as_secs() as i64,
            nanos: now.subsec_nanos() as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Detach every mount at `path` (rootfs layers); quiet if none.
pub fn unmount(path: &Path) {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // Stacked mounts come off one at a time; EINVAL once nothing is left.
    for _ in 0..16 {
        // SAFETY: a valid C string; umount2 has no other preconditions.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::Message as _;

    #[test]
    fn the_response_reads_back() {
        let bytes = response().write_to_bytes().unwrap();
        let r = DeleteResponse::parse_from_bytes(&bytes).unwrap();
        assert_eq!((r.pid, r.exit_status), (0, 137));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!((now.as_secs() as i64 - r.exited_at.seconds).abs() < 5);
    }
}
