//! Scenario `chaos`, reliability (opt-in: `wisp bench --scenario chaos`):
//!
//! - (a) [`kill`]: `kill -9` of `wisp serve` under load and deploys, R
//!   rounds on one home; after each restart, every acknowledged deploy must
//!   be there, every function must answer correctly and no activation may
//!   be recorded twice;
//! - (b) [`soak`]: `hello` open-loop at 80 % of its saturation rate for
//!   minutes; RSS and p99 per window must stay flat;
//! - (c) [`noisy`]: `hello`'s latency at a modest rate, alone and while a
//!   spinning guest, a memory bomb, a request storm and thousands of slow
//!   connections run beside it.
//!
//! Everything talks to 127.0.0.1 only, every loop is bounded in count and
//! time, and the servers are children killed on drop.

mod kill;
mod noisy;
mod soak;

use crate::Ctx;
use crate::report::Section;
use anyhow::Result;
use serde_json::json;

/// Run the three parts; a part that fails marks the section failed but the
/// others still run and report.
pub async fn run(ctx: &Ctx) -> Result<Section> {
    super::raise_nofile();
    let mut sec = Section::new(
        "chaos",
        "Reliability: kill -9 under load, soak, noisy neighbours",
    );
    sec.para(
        "Three measurements of how Wisp behaves when things go wrong, each with its target judged in the table above. \
         All traffic is to 127.0.0.1; the load generator shares the machine's cores with the server.",
    );
    let mut errors = vec![];
    let mut data = serde_json::Map::new();
    let parts = &ctx.opts.chaos_parts;
    let wanted = |p: &str| parts.is_empty() || parts.iter().any(|x| x == p);
    if wanted("kill") {
        ctx.progress("chaos (a): kill -9 under load");
        match kill::run(ctx, &mut sec).await {
            Ok(j) => {
                data.insert("kill".into(), j);
            }
            Err(e) => errors.push(format!("(a) kill -9: {e:#}")),
        }
    }
    if wanted("soak") {
        ctx.progress("chaos (b): soak");
        match soak::run(ctx, &mut sec).await {
            Ok(j) => {
                data.insert("soak".into(), j);
            }
            Err(e) => errors.push(format!("(b) soak: {e:#}")),
        }
    }
    if wanted("noisy") {
        ctx.progress("chaos (c): noisy neighbours");
        match noisy::run(ctx, &mut sec).await {
            Ok(j) => {
                data.insert("noisy".into(), j);
            }
            Err(e) => errors.push(format!("(c) noisy neighbours: {e:#}")),
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            ctx.progress(&format!("chaos: part FAILED: {e}"));
            sec.para(&format!("**Part failed:** `{}`", e.replace('`', "'")));
        }
        sec.ok = false;
        sec.error = Some(errors.join("; "));
    }
    data.insert("errors".into(), json!(errors));
    sec.json = serde_json::Value::Object(data);
    Ok(sec)
}

/// Milliseconds of a duration.
pub(crate) fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
