//! Network namespaces for HTTP functions.
//!
//! A network namespace belongs to a thread, and a socket to the namespace
//! of the thread that created it. An HTTP function gets its own Tokio
//! runtime whose threads all enter the container's namespace as they start,
//! so its listener, its accepted connections and its guests' outbound
//! connections all live there, while the shim's ttrpc server stays in the
//! host's.

use anyhow::{Context, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use crate::spec::NetNs;

/// Open the namespace a container asks for: `None` for the host's.
pub fn open(ns: &NetNs) -> Result<Option<Arc<OwnedFd>>> {
    match ns {
        NetNs::Host => Ok(None),
        NetNs::Path(p) => {
            let f = std::fs::File::open(p)
                .with_context(|| format!("opening the network namespace {}", p.display()))?;
            Ok(Some(Arc::new(f.into())))
        }
        NetNs::New => new_namespace().map(|fd| Some(Arc::new(fd))),
    }
}

/// A new network namespace with its loopback up (what runc makes for a
/// container whose spec asks for one without a path), created on a
/// short-lived thread so no other thread of the shim changes namespace.
fn new_namespace() -> Result<OwnedFd> {
    std::thread::spawn(|| -> Result<OwnedFd> {
        // SAFETY: unshare affects only this thread, which ends right after.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("creating a network namespace (unshare)");
        }
        loopback_up()?;
        let f = std::fs::File::open("/proc/thread-self/ns/net")
            .context("opening the new network namespace")?;
        Ok(f.into())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("network namespace thread panicked"))?
}

/// `ip link set lo up` in the current thread's namespace.
fn loopback_up() -> Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq whose name is set
    // within bounds; the socket is owned and closed by OwnedFd.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(std::io::Error::last_os_error()).context("socket for SIOCSIFFLAGS");
        }
        let s = OwnedFd::from_raw_fd(s);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, c) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *c as libc::c_char;
        }
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(std::io::Error::last_os_error()).context("reading lo's flags");
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(std::io::Error::last_os_error()).context("setting lo up");
        }
    }
    Ok(())
}

/// Move the calling thread into `fd`'s network namespace.
pub fn enter(fd: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: setns on a valid namespace fd; affects the calling thread only.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A multi-thread runtime (worker and blocking threads) living in `ns`.
///
/// A thread that can't enter the namespace aborts the shim rather than
/// serve from the host's namespace; entering is first tried on a probe
/// thread, so a bad namespace is an error here instead.
pub fn runtime(ns: Option<Arc<OwnedFd>>, threads: usize) -> Result<tokio::runtime::Runtime> {
    if let Some(fd) = &ns {
        let fd = fd.clone();
        std::thread::spawn(move || enter(&fd))
            .join()
            .map_err(|_| anyhow::anyhow!("namespace probe thread panicked"))?
            .context("entering the container's network namespace (setns)")?;
    }
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(threads)
        .thread_name("wisp-http")
        .enable_all();
    if let Some(fd) = ns {
        b.on_thread_start(move || {
            if let Err(e) = enter(&fd) {
                log::error!("a server thread could not enter the network namespace: {e}");
                std::process::abort();
            }
        });
    }
    b.build().context("starting the HTTP function's runtime")
}
