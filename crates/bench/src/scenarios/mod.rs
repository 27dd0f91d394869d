//! The scenarios of issue 5 (and `chaos`, the reliability one). Each
//! returns a [`Section`] of the report.

mod chaos;
mod cold;
mod concurrent;
mod containerd;
mod k8s;
mod memory;
mod mixed;
mod openwhisk;
mod runtime;
mod serial;
mod size;
mod workflow;

use crate::baseline::{Launcher, ProcessServer};
use crate::report::Section;
use crate::stats::{MannWhitney, Summary, mann_whitney};
use crate::{Ctx, Scenario};
use anyhow::Result;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Run one scenario.
pub async fn run(ctx: &Ctx, s: Scenario) -> Result<Section> {
    match s {
        Scenario::Serial => serial::run(ctx).await,
        Scenario::Cold => cold::run(ctx).await,
        Scenario::Concurrent => concurrent::run(ctx).await,
        Scenario::Mixed => mixed::run(ctx).await,
        Scenario::Memory => memory::run(ctx).await,
        Scenario::Runtime => runtime::run(ctx).await,
        Scenario::Size => size::run(ctx).await,
        Scenario::Chaos => chaos::run(ctx).await,
        Scenario::Containerd => containerd::run(ctx).await,
        Scenario::OpenWhisk => openwhisk::run(ctx).await,
        Scenario::Workflow => workflow::run(ctx).await,
        Scenario::K8s => k8s::run(ctx).await,
    }
}

/// The config every benchmark deployment uses: generous limits so the
/// platform, not a limit, is what is measured.
pub(crate) fn bench_config() -> Value {
    json!({"limits": {"max_concurrency": 1000, "max_queue": 10000, "timeout_ms": 120000, "queue_timeout_ms": 60000}})
}

/// The per-request baselines for `names`: native process (always) and
/// container (when runc works; otherwise why not).
pub(crate) struct Baselines {
    pub native: ProcessServer,
    pub container: Result<ProcessServer, String>,
}

impl Baselines {
    pub fn start(ctx: &Ctx, names: &[&str], with_container: bool) -> Result<Baselines> {
        let mut native = HashMap::new();
        for n in names {
            native.insert(
                n.to_string(),
                Launcher::Native(ctx.native(n)?.to_path_buf()),
            );
        }
        let container = if with_container {
            match ctx.runc() {
                Ok(r) => {
                    let mut routes = HashMap::new();
                    for n in names {
                        routes.insert(
                            n.to_string(),
                            Launcher::Runc(r.clone(), ctx.native(n)?.to_path_buf()),
                        );
                    }
                    ProcessServer::start(routes).map_err(|e| format!("{e:#}"))
                }
                Err(e) => Err(e),
            }
        } else {
            Err("not part of this measurement".into())
        };
        Ok(Baselines {
            native: ProcessServer::start(native)?,
            container,
        })
    }

    /// (platform name, server) of the baselines that run.
    pub fn list(&self) -> Vec<(&'static str, &ProcessServer)> {
        let mut v = vec![("native process", &self.native)];
        if let Ok(c) = &self.container {
            v.push(("runc container", c));
        }
        v
    }
}

/// One measured arm: summary + raw samples + test against Wisp.
pub(crate) fn arm_json(samples: &[f64], errors: u64, vs_wisp: Option<&MannWhitney>) -> Value {
    json!({"summary": Summary::of(samples), "errors": errors, "mann_whitney_vs_wisp": vs_wisp, "samples_ms": samples})
}

/// Mann–Whitney of Wisp's samples against a baseline's.
pub(crate) fn mw(wisp: &[f64], other: &[f64]) -> Option<MannWhitney> {
    mann_whitney(wisp, other)
}

/// Duration of a `Server-Timing` metric, ms.
pub(crate) fn server_timing(h: Option<&str>, metric: &str) -> Option<f64> {
    h?.split(',').find_map(|part| {
        let mut it = part.trim().split(';');
        if it.next()?.trim() != metric {
            return None;
        }
        it.find_map(|kv| kv.trim().strip_prefix("dur="))
            .and_then(|v| v.parse().ok())
    })
}

/// A wasm module made distinct by a custom section (same code, new hash).
pub(crate) fn distinct_module(wasm: &[u8], tag: &str) -> Vec<u8> {
    let name = b"wisp-bench";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    let mut len = payload.len() as u32;
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        out.push(if len == 0 { b } else { b | 0x80 });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&payload);
    out
}

/// Raise this process's open-file limit to its hard limit (many sockets).
pub(crate) fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_parse() {
        let h = Some("wait;dur=0.01, init;dur=1.5, run;dur=0.2");
        assert_eq!(server_timing(h, "init"), Some(1.5));
        assert_eq!(server_timing(h, "run"), Some(0.2));
        assert_eq!(server_timing(h, "x"), None);
        assert_eq!(server_timing(None, "run"), None);
    }

    #[test]
    fn distinct_module_appends_custom_section() {
        let m = distinct_module(b"\0asm\x01\0\0\0", "7");
        assert_eq!(&m[8..], b"\x00\x0c\x0awisp-bench7");
    }
}
