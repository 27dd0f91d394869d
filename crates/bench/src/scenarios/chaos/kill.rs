//! (a) `kill -9` under load. One persistent home; each round starts load
//! clients and one deployer per function, SIGKILLs the server after a
//! seeded random delay, restarts it on the same home and verifies it:
//!
//! - **lost**: an acknowledged deploy (200/201 with its version) whose
//!   function is missing, whose version list lacks that version, or whose
//!   active version is older;
//! - **corrupt**: a listed function that is marked broken, whose active
//!   config and module are not a pair this bench uploaded together, or that
//!   does not answer 200 with the output its version must give; a server
//!   that fails to start; a 200 with a wrong body during the load;
//! - **duplicated activations**: `SELECT id FROM activations GROUP BY id
//!   HAVING COUNT(*) > 1` on `wisp.db` (read with the server down), plus
//!   any activation id that two answers carried.

use super::ms;
use crate::Ctx;
use crate::http::{Http, multipart};
use crate::load::Rng;
use crate::plot;
use crate::report::{Section, num, table};
use crate::scenarios::{bench_config, distinct_module};
use crate::server::WispServer;
use crate::stats::Summary;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The functions deployed over and over.
const FUNCS: [&str; 3] = ["chaos-a", "chaos-b", "chaos-c"];
/// Concurrent invoking clients per round.
const CLIENTS: usize = 4;
/// Seed of the kill delays (and, derived, of the clients' picks).
const SEED: u64 = 0x00C4_A05D_EAD1;
/// Kill delay range, ms.
const DELAY_MS: (f64, f64) = (20.0, 400.0);
/// Hard bound on one round's load and deploy loops.
const ROUND_LIMIT: Duration = Duration::from_secs(30);
/// Bounds on loop counts per round.
const MAX_REQUESTS_PER_CLIENT: u64 = 200_000;
const MAX_DEPLOYS_PER_FUNCTION: u64 = 1_000;
/// `wisp serve` flags: keep every activation record (the default keeps
/// the newest 100,000), so "answered but not recorded" counts only records
/// lost to the kill, not pruned ones.
const SERVE_ARGS: [&str; 2] = ["--activation-retention", "1000000000"];
/// Starts tried after a kill before giving up on the scenario.
const START_TRIES: usize = 3;

const HELLO_BODY: &str = "Hello, world!\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Hello,
    Cgi,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Hello => "hello",
            Kind::Cgi => "cgi",
        }
    }
}

/// A deploy this bench attempted (acknowledged or not).
#[derive(Clone, Debug)]
struct Attempt {
    kind: Kind,
    /// `sha256:<hex>` of the module sent.
    digest: String,
}

/// An acknowledged deploy.
#[derive(Clone, Debug)]
struct Ack {
    name: &'static str,
    version: u64,
}

type Attempts = Arc<Mutex<HashMap<String, Attempt>>>;

/// The two guests every version is made from.
struct Mods {
    hello: Vec<u8>,
    cgi: Vec<u8>,
}

impl Mods {
    /// Deploy number `g` of `name`: kind, module, config. Alternates the
    /// module (a new hash every other deploy, so those compile and write a
    /// new blob and artifact; the shared base modules make deploys of
    /// different functions race on the same blob) and always changes the
    /// config's `env`, which `test-cgi` echoes back.
    fn variant(&self, name: &str, g: u64) -> (Kind, Vec<u8>, Value) {
        let tag = gen_tag(name, g);
        let (kind, module) = match g % 4 {
            0 => (Kind::Hello, distinct_module(&self.hello, &tag)),
            1 => (Kind::Cgi, self.cgi.clone()),
            2 => (Kind::Cgi, distinct_module(&self.cgi, &tag)),
            _ => (Kind::Hello, self.hello.clone()),
        };
        let mut cfg = bench_config();
        cfg["env"] = json!({"CHAOS_GEN": tag, "CHAOS_KIND": kind.name()});
        (kind, module, cfg)
    }
}

fn gen_tag(name: &str, g: u64) -> String {
    format!("{name}:{g}")
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Does a 200 body fit a version of `kind` deployed with tag `tag`?
fn body_fits(kind: Kind, tag: &str, body: &str) -> bool {
    match kind {
        Kind::Hello => body == HELLO_BODY,
        Kind::Cgi => {
            let want = format!("CHAOS_GEN={tag}");
            body.lines().any(|l| l == want)
        }
    }
}

/// Is a 200 body during the load an answer `name` could give?
fn plausible(name: &str, body: &str) -> bool {
    let prefix = format!("CHAOS_GEN={name}:");
    body == HELLO_BODY || body.lines().any(|l| l.starts_with(&prefix))
}

/// Outcome of one deploy request.
enum Deployed {
    Acked(u64),
    /// Status and the start of the body.
    Refused(u16, String),
    Failed,
}

async fn deploy_one(
    http: &Http,
    base: &str,
    mods: &Mods,
    name: &'static str,
    g: u64,
    attempts: &Attempts,
) -> Deployed {
    let (kind, module, cfg) = mods.variant(name, g);
    attempts.lock().unwrap().insert(
        gen_tag(name, g),
        Attempt {
            kind,
            digest: digest(&module),
        },
    );
    let cfg = serde_json::to_vec(&cfg).expect("serializes");
    let (ct, body) = multipart(&[
        ("module", "application/wasm", &module),
        ("config", "application/json", &cfg),
    ]);
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        http.send(
            Method::PUT,
            &format!("{base}/v1/functions/{name}"),
            &[("content-type", &ct)],
            Bytes::from(body),
        ),
    )
    .await;
    match r {
        Ok(Ok(rep)) if rep.status == 200 || rep.status == 201 => {
            match serde_json::from_slice::<Value>(&rep.body)
                .ok()
                .and_then(|v| v["version"].as_u64())
            {
                Some(v) => Deployed::Acked(v),
                // An acknowledgement without a version can't be checked.
                None => Deployed::Refused(rep.status.as_u16(), "no version in the reply".into()),
            }
        }
        Ok(Ok(rep)) => {
            Deployed::Refused(rep.status.as_u16(), rep.text().chars().take(300).collect())
        }
        _ => Deployed::Failed,
    }
}

#[derive(Default)]
struct DeployerOut {
    next_gen: u64,
    acks: Vec<Ack>,
    attempted: u64,
    refused: BTreeMap<u16, u64>,
    refused_examples: Vec<String>,
    failed: u64,
}

async fn deployer(
    base: String,
    mods: Arc<Mods>,
    name: &'static str,
    mut g: u64,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    attempts: Attempts,
) -> DeployerOut {
    let http = Http::new(true);
    let mut out = DeployerOut::default();
    for _ in 0..MAX_DEPLOYS_PER_FUNCTION {
        if stop.load(Relaxed) || Instant::now() >= deadline {
            break;
        }
        out.attempted += 1;
        let d = deploy_one(&http, &base, &mods, name, g, &attempts).await;
        g += 1;
        match d {
            Deployed::Acked(version) => out.acks.push(Ack { name, version }),
            Deployed::Refused(s, body) => {
                *out.refused.entry(s).or_default() += 1;
                if out.refused_examples.len() < 3 {
                    out.refused_examples.push(format!(
                        "deploy {name} #{} refused: HTTP {s}: {body}",
                        g - 1
                    ));
                }
            }
            Deployed::Failed => {
                out.failed += 1;
                // The server is gone (or going): don't spin on refused connects.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    out.next_gen = g;
    out
}

#[derive(Default)]
struct ClientOut {
    ok: u64,
    /// 200 answers whose body no version of that function gives.
    wrong: u64,
    wrong_examples: Vec<String>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    ids: Vec<String>,
}

async fn client(base: String, seed: u64, stop: Arc<AtomicBool>, deadline: Instant) -> ClientOut {
    let http = Http::new(true);
    let mut rng = Rng::new(seed);
    let mut out = ClientOut::default();
    for _ in 0..MAX_REQUESTS_PER_CLIENT {
        if stop.load(Relaxed) || Instant::now() >= deadline {
            break;
        }
        let name = FUNCS[rng.pick(&[], FUNCS.len())];
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            http.get(&format!("{base}/fn/{name}")),
        )
        .await;
        match r {
            Ok(Ok(rep)) if rep.status == 200 => {
                out.ok += 1;
                if let Some(id) = rep.header("wisp-activation-id") {
                    out.ids.push(id.to_string());
                }
                let body = rep.text();
                if !plausible(name, &body) {
                    out.wrong += 1;
                    if out.wrong_examples.len() < 3 {
                        out.wrong_examples.push(format!(
                            "{name}: {:?}",
                            body.chars().take(120).collect::<String>()
                        ));
                    }
                }
            }
            Ok(Ok(rep)) => *out.statuses.entry(rep.status.as_u16()).or_default() += 1,
            _ => {
                out.transport_errors += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    out
}

/// `wisp.db`'s activations, read with the server down: (ids recorded more
/// than once, rows). Read-only: the server's own recovery is what restart
/// tests, so nothing here writes the database.
fn db_activations(home: &Path) -> Result<(u64, u64, HashSet<String>)> {
    let db = rusqlite::Connection::open_with_flags(
        home.join("wisp.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .context("opening wisp.db read-only")?;
    db.busy_timeout(Duration::from_secs(5))?;
    let mut dup = db.prepare("SELECT id FROM activations GROUP BY id HAVING COUNT(*) > 1")?;
    let dups = dup.query_map([], |r| r.get::<_, String>(0))?.count() as u64;
    let mut all = db.prepare("SELECT id FROM activations")?;
    let ids: HashSet<String> = all
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    let rows: u64 = db.query_row("SELECT COUNT(*) FROM activations", [], |r| r.get(0))?;
    Ok((dups, rows, ids))
}

/// After a restart: (acknowledged deploys lost, functions corrupt, notes).
async fn verify(
    server: &WispServer,
    acked: &[Ack],
    attempts: &Attempts,
) -> (HashSet<(String, u64)>, u64, Vec<String>) {
    let mut lost = HashSet::new();
    let mut notes = vec![];
    let http = Http::new(false);
    let list = tokio::time::timeout(
        Duration::from_secs(30),
        http.get(&format!("{}/v1/functions", server.url)),
    )
    .await;
    let list: Vec<Value> = match list {
        Ok(Ok(r)) if r.status == 200 => match serde_json::from_slice::<Value>(&r.body) {
            Ok(v) => v["functions"].as_array().cloned().unwrap_or_default(),
            Err(e) => {
                notes.push(format!("GET /v1/functions: bad JSON: {e}"));
                return (lost, 1, notes);
            }
        },
        Ok(Ok(r)) => {
            notes.push(format!("GET /v1/functions: HTTP {}", r.status));
            return (lost, 1, notes);
        }
        Ok(Err(e)) => {
            notes.push(format!("GET /v1/functions: {e:#}"));
            return (lost, 1, notes);
        }
        Err(_) => {
            notes.push("GET /v1/functions: no answer in 30 s".into());
            return (lost, 1, notes);
        }
    };
    let by_name: HashMap<&str, &Value> = list
        .iter()
        .filter_map(|f| Some((f["name"].as_str()?, f)))
        .collect();
    for a in acked {
        let ok = by_name.get(a.name).is_some_and(|f| {
            f["version"].as_u64().is_some_and(|v| v >= a.version)
                && f["versions"]
                    .as_array()
                    .is_some_and(|vs| vs.iter().any(|v| v.as_u64() == Some(a.version)))
        });
        if !ok && lost.insert((a.name.to_string(), a.version)) {
            notes.push(format!("lost: {} v{}", a.name, a.version));
        }
    }
    let mut corrupt = 0;
    for f in &list {
        let name = f["name"].as_str().unwrap_or("?").to_string();
        let version = f["version"].as_u64().unwrap_or(0);
        let why = check_function(server, &http, f, attempts).await;
        if let Err(e) = why {
            corrupt += 1;
            notes.push(format!("corrupt: {name} v{version}: {e:#}"));
        }
    }
    (lost, corrupt, notes)
}

async fn check_function(
    server: &WispServer,
    http: &Http,
    f: &Value,
    attempts: &Attempts,
) -> Result<()> {
    let name = f["name"].as_str().context("no name")?;
    if let Some(b) = f.get("broken").and_then(|b| b.as_str()) {
        bail!("marked broken: {b}");
    }
    let tag = f["config"]["env"]["CHAOS_GEN"]
        .as_str()
        .context("active config has no CHAOS_GEN")?;
    if !tag.starts_with(&format!("{name}:")) {
        bail!("active config is {tag}, another function's");
    }
    let a = attempts
        .lock()
        .unwrap()
        .get(tag)
        .cloned()
        .with_context(|| format!("active config {tag} was never deployed"))?;
    let d = f["digest"].as_str().unwrap_or("");
    if d != a.digest {
        bail!("config {tag} with module {d}, uploaded with {}", a.digest);
    }
    if f["config"]["env"]["CHAOS_KIND"].as_str() != Some(a.kind.name()) {
        bail!("config {tag}'s CHAOS_KIND does not match its module");
    }
    let r = tokio::time::timeout(Duration::from_secs(30), http.get(&server.fn_url(name, "")))
        .await
        .context("invoke: no answer in 30 s")??;
    if r.status != 200 {
        bail!("invoke: HTTP {}: {}", r.status, r.text().trim_end());
    }
    let body = r.text();
    if !body_fits(a.kind, tag, &body) {
        bail!(
            "invoke: body does not fit {tag} ({}): {:?}",
            a.kind.name(),
            body.chars().take(120).collect::<String>()
        );
    }
    Ok(())
}

/// Start on `home`, trying up to [`START_TRIES`] times; the failures.
fn start_tries(
    server: &mut Option<WispServer>,
    ctx: &Ctx,
    home: &Path,
    notes: &mut Vec<String>,
) -> Result<(Duration, u64)> {
    let mut failed = 0;
    for _ in 0..START_TRIES {
        let t0 = Instant::now();
        let r = match server.as_mut() {
            Some(s) => s.respawn(),
            None => WispServer::start(&ctx.opts.wisp_bin, home, &SERVE_ARGS).map(|s| {
                *server = Some(s);
            }),
        };
        match r {
            Ok(()) => return Ok((t0.elapsed(), failed)),
            Err(e) => {
                failed += 1;
                notes.push(format!("start failed: {e:#}"));
            }
        }
    }
    bail!("`wisp serve` failed to start {START_TRIES} times on the same home: {notes:?}")
}

pub(super) async fn run(ctx: &Ctx, sec: &mut Section) -> Result<Value> {
    let rounds: usize = ctx.pick(5, 100);
    let mods = Arc::new(Mods {
        hello: ctx.wasm("hello")?,
        cgi: ctx.wasm("test-cgi")?,
    });
    let home = ctx.scratch("chaos-kill-home");
    let attempts: Attempts = Arc::default();
    let mut acked: Vec<Ack> = vec![];
    let mut notes: Vec<String> = vec![];
    let mut server: Option<WispServer> = None;
    let mut failed_starts = start_tries(&mut server, ctx, &home, &mut notes)?.1;
    let mut next_gen: HashMap<&'static str, u64> = HashMap::new();
    {
        // Every function exists before the first kill.
        let s = server.as_ref().expect("started");
        let http = Http::new(true);
        for name in FUNCS {
            match deploy_one(&http, &s.url, &mods, name, 0, &attempts).await {
                Deployed::Acked(version) => acked.push(Ack { name, version }),
                _ => bail!("initial deploy of {name} failed"),
            }
            next_gen.insert(name, 1);
        }
    }
    let mut rng = Rng::new(SEED);
    let mut lost: HashSet<(String, u64)> = HashSet::new();
    let mut corrupt = 0u64;
    let (mut wrong, mut wrong_examples) = (0u64, vec![]);
    let mut restart_ms = vec![];
    let mut delays = vec![];
    let mut per_round = vec![];
    let (mut attempted, mut deploy_failed) = (0u64, 0u64);
    let mut refused: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut answered, mut transport_errors) = (0u64, 0u64);
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut ids_seen: HashMap<String, u32> = HashMap::new();
    let (mut dup_rows_max, mut db_checks_failed) = (0u64, 0u64);
    let bar = crate::progress::counter("chaos: kill -9 rounds", rounds as u64);
    for round in 0..rounds {
        bar.inc();
        let delay = Duration::from_secs_f64(
            (DELAY_MS.0 + rng.next_f64() * (DELAY_MS.1 - DELAY_MS.0)) / 1e3,
        );
        delays.push(ms(delay));
        let s = server.as_mut().expect("started");
        let base = s.url.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + ROUND_LIMIT;
        let mut clients = vec![];
        for c in 0..CLIENTS {
            let seed = SEED ^ ((round as u64 + 1) << 16) ^ (c as u64 + 1);
            clients.push(tokio::spawn(client(
                base.clone(),
                seed,
                stop.clone(),
                deadline,
            )));
        }
        let mut deployers = vec![];
        for name in FUNCS {
            deployers.push(tokio::spawn(deployer(
                base.clone(),
                mods.clone(),
                name,
                next_gen[name],
                stop.clone(),
                deadline,
                attempts.clone(),
            )));
        }
        tokio::time::sleep(delay).await;
        s.kill9();
        stop.store(true, Relaxed);
        let mut round_acks = 0;
        for (name, d) in FUNCS.iter().zip(deployers) {
            let d = tokio::time::timeout(Duration::from_secs(60), d)
                .await
                .context("a deployer did not stop")?
                .context("deployer task")?;
            next_gen.insert(name, d.next_gen);
            attempted += d.attempted;
            deploy_failed += d.failed;
            for (k, v) in d.refused {
                *refused.entry(k).or_default() += v;
            }
            for e in d.refused_examples {
                if notes.len() < 50 {
                    notes.push(format!("round {round}: {e}"));
                }
            }
            round_acks += d.acks.len();
            acked.extend(d.acks);
        }
        let mut round_ok = 0;
        for c in clients {
            let c = tokio::time::timeout(Duration::from_secs(60), c)
                .await
                .context("a load client did not stop")?
                .context("client task")?;
            round_ok += c.ok;
            answered += c.ok;
            transport_errors += c.transport_errors;
            wrong += c.wrong;
            for e in c.wrong_examples {
                if wrong_examples.len() < 5 {
                    wrong_examples.push(e);
                }
            }
            for (k, v) in c.statuses {
                *statuses.entry(k).or_default() += v;
            }
            for id in c.ids {
                *ids_seen.entry(id).or_default() += 1;
            }
        }
        // The server is down: read what it left on disk.
        let dup_rows = match tokio::task::block_in_place(|| db_activations(&home)) {
            Ok((d, _, _)) => d,
            Err(e) => {
                db_checks_failed += 1;
                notes.push(format!("round {round}: activation check: {e:#}"));
                0
            }
        };
        dup_rows_max = dup_rows_max.max(dup_rows);
        let (took, fails) =
            tokio::task::block_in_place(|| start_tries(&mut server, ctx, &home, &mut notes))?;
        failed_starts += fails;
        restart_ms.push(ms(took));
        let s = server.as_ref().expect("started");
        let (l, c, n) = verify(s, &acked, &attempts).await;
        let new_lost = l.difference(&lost).count();
        lost.extend(l);
        corrupt += c;
        for x in n {
            if notes.len() < 50 {
                notes.push(format!("round {round}: {x}"));
            }
        }
        per_round.push(json!({"round": round, "kill_after_ms": ms(delay), "acks": round_acks, "answered": round_ok,
                              "restart_ms": ms(took), "failed_starts": fails, "lost_new": new_lost, "corrupt": c,
                              "duplicate_rows": dup_rows}));
    }
    drop(bar);
    // A graceful stop flushes what the last server buffered; then the whole
    // activation log is read once more.
    let mut s = server.take().expect("started");
    s.stop();
    let (dup_rows, rows, ids) = tokio::task::block_in_place(|| db_activations(&home))?;
    drop(s);
    let dup_rows = dup_rows.max(dup_rows_max);
    let dup_ids_seen = ids_seen.values().filter(|n| **n > 1).count() as u64;
    let duplicates = dup_rows + dup_ids_seen;
    let unrecorded = ids_seen.keys().filter(|id| !ids.contains(*id)).count() as u64;
    let corrupt_total = corrupt + failed_starts + wrong;
    let rs = Summary::of(&restart_ms);
    let acks_n = acked.len() as u64;
    let lost_n = lost.len() as u64;

    sec.para(&format!(
        "**(a) kill -9 under load.** {rounds} rounds on one persistent home. Each round: {CLIENTS} clients invoke `{}` in a loop \
         (keep-alive) while one deployer per function `PUT`s new versions back to back (the module changes every other deploy — a new \
         hash, so a new blob and a compile — and the config's `env` every time; `test-cgi` versions echo it back); after a random delay \
         of {:.0}–{:.0} ms (seeded, reproducible) the server gets `SIGKILL`, then is restarted on the same home and checked: every \
         deploy acknowledged with 200/201 must be present at that version or later (*lost*); every listed function must be unbroken, \
         run a config and module this bench uploaded together, and answer 200 with that version's output (*corrupt*, which also \
         counts failed starts and wrong 200 bodies during the load); `SELECT id FROM activations GROUP BY id HAVING COUNT(*) > 1` on \
         `wisp.db` (read-only, with the server down) plus activation ids handed out twice (*duplicated*). Restart time is from spawn \
         to the `wisp listening` line.",
        FUNCS.join("`, `"),
        DELAY_MS.0,
        DELAY_MS.1
    ));
    sec.markdown.push_str(&table(
        &[
            "rounds",
            "deploys sent",
            "acknowledged",
            "lost",
            "corrupt",
            "failed starts",
            "duplicated activations",
            "restart p50 ms",
            "restart max ms",
        ],
        &[vec![
            rounds.to_string(),
            attempted.to_string(),
            acks_n.to_string(),
            lost_n.to_string(),
            corrupt.to_string(),
            failed_starts.to_string(),
            duplicates.to_string(),
            num(rs.median),
            num(rs.max),
        ]],
    ));
    sec.para(&format!(
        "During the rounds: {answered} invocations answered 200 ({wrong} with a wrong body), {transport_errors} transport errors \
         (mostly requests in flight at the kill), other statuses {statuses:?}; {deploy_failed} deploys cut off by the kill, refused \
         {refused:?}. Activation log after the final graceful stop: {rows} rows; {unrecorded} of the {} answered invocations have no \
         record (answered, then the record was still buffered when the server was killed — records are written in batches after \
         the response; the server runs with `{}` so none is pruned; not a target).",
        ids_seen.len(),
        SERVE_ARGS.join(" ")
    ));
    if !notes.is_empty() {
        sec.para(&format!(
            "Findings: {}",
            notes
                .iter()
                .take(10)
                .map(|n| format!("`{}`", n.replace('`', "'")))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    sec.plot(
        "chaos_restart.svg",
        plot::lines(
            "kill -9: restart time per round",
            "round",
            "spawn → listening (ms)",
            &[(
                "restart".into(),
                restart_ms
                    .iter()
                    .enumerate()
                    .map(|(i, v)| ((i + 1) as f64, *v))
                    .collect(),
            )],
            plot::LineOpts {
                markers: true,
                ..Default::default()
            },
        ),
        "Time from spawning `wisp serve` on the killed server's home to its listening line, per round",
    );
    sec.target(
        "kill -9: acknowledged deploys lost",
        "0",
        format!("{lost_n} of {acks_n} acknowledged deploys ({rounds} kills)"),
        Some(lost_n == 0),
    );
    sec.target(
        "kill -9: corrupt after restart",
        "0",
        format!(
            "{corrupt} functions failed verification, {failed_starts} failed starts, {wrong} wrong answers under load ({rounds} rounds)"
        ),
        Some(corrupt_total == 0),
    );
    sec.target(
        "kill -9: duplicated activations",
        "0",
        format!(
            "{dup_rows} duplicate ids in wisp.db ({rows} rows), {dup_ids_seen} ids answered twice"
        ),
        Some(duplicates == 0 && db_checks_failed == 0),
    );
    Ok(json!({
        "rounds": rounds, "seed": SEED, "clients": CLIENTS, "functions": FUNCS,
        "deploys_attempted": attempted, "acknowledged": acks_n, "lost": lost_n,
        "corrupt": corrupt, "failed_starts": failed_starts, "wrong_answers_under_load": wrong,
        "wrong_examples": wrong_examples, "corrupt_total": corrupt_total,
        "duplicate_rows": dup_rows, "duplicate_ids_answered": dup_ids_seen, "duplicates": duplicates,
        "db_checks_failed": db_checks_failed,
        "restart_ms": restart_ms, "restart": rs, "kill_after_ms": delays,
        "answered": answered, "transport_errors": transport_errors, "statuses": statuses,
        "deploys_cut_off": deploy_failed, "deploys_refused": refused,
        "activation_rows": rows, "answered_ids": ids_seen.len(), "answered_unrecorded": unrecorded,
        "notes": notes, "per_round": per_round,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked_against_the_version() {
        assert!(body_fits(Kind::Hello, "chaos-a:3", HELLO_BODY));
        assert!(!body_fits(Kind::Hello, "chaos-a:3", "X=1\n"));
        let cgi = "CHAOS_GEN=chaos-a:12\nCHAOS_KIND=cgi\n--- body ---\n";
        assert!(body_fits(Kind::Cgi, "chaos-a:12", cgi));
        assert!(!body_fits(Kind::Cgi, "chaos-a:1", cgi));
        assert!(body_fits(Kind::Cgi, "chaos-a:12", &format!("A=1\n{cgi}")));
        assert!(plausible("chaos-a", cgi));
        assert!(!plausible("chaos-b", cgi));
    }

    #[test]
    fn variants_alternate_module_and_config() {
        let m = Mods {
            hello: b"\0asm\x01\0\0\0".to_vec(),
            cgi: b"\0asm\x01\0\0\0\0\x02\x01x".to_vec(),
        };
        let kinds: Vec<Kind> = (0..4).map(|g| m.variant("f", g).0).collect();
        assert_eq!(kinds, [Kind::Hello, Kind::Cgi, Kind::Cgi, Kind::Hello]);
        let digests: HashSet<String> = (0..8).map(|g| digest(&m.variant("f", g).1)).collect();
        // 0 and 4 and 2 and 6 are distinct copies; 1, 5 share cgi; 3, 7 share hello.
        assert_eq!(digests.len(), 6);
        assert_eq!(m.variant("f", 5).2["env"]["CHAOS_GEN"], "f:5");
    }
}
