//! Workflows: the deployed definitions and the engine that runs them.
//!
//! A run is one async function on the request's task. It keeps the steps
//! that are running in a `FuturesUnordered` and starts each step as soon as
//! its last input has ended; every step goes through the executor's own
//! stages ([`Executor::invoke_as`]: a [`Draft`](crate::activation) record
//! tied to the run, admission, the warm template, the ABI's run function),
//! so independent branches run at once within each function's concurrency
//! limit and the guest work happens on the guest runtime, as for `/fn`.
//!
//! Hand-off is in memory: a step's output is a `Bytes` that its readers'
//! requests share (a command module's stdin reads from it), so the only
//! copies are the ones the guest ABI makes (into and out of linear memory)
//! and a fan-in's merge. Between two `wasi:http` components with
//! `stream: true`, the reader gets the producer's response body as its
//! request body, frame by frame, while the producer still runs.
//!
//! A step that fails (or answers 4xx/5xx) fails the run with its name;
//! the run's deadline fails it as a timeout. Either way the steps still
//! running are dropped: their guests are aborted, their admission guards
//! give back every permit and slot, and their records say why.

use crate::Executor;
use crate::activation::{CLIENT_GONE, CancelReason, Msg, new_activation_id, now_ms};
use crate::admission::Buffered;
use crate::error::{Error, join_err, store_err};
use crate::invoke::{GuestAt, Making, Place, Request, RequestBody, ResponseBody};
use crate::resolve::resolved;
use crate::table::FunctionHandle;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use http::{HeaderMap, HeaderValue, header};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use wisp_core::{ActivationStatus, ErrorKind};
use wisp_runtime::{AbortOnDrop, GuestBody};
use wisp_store::StoredWorkflow;
use wisp_workflow::merge::{Part, merge};
use wisp_workflow::{
    FunctionRef, Invalid, Plan, PlannedStep, Source, StepRecord, Workflow, WorkflowActivation,
};

/// A deployed workflow.
pub struct WorkflowHandle {
    stored: StoredWorkflow,
    definition: Result<Workflow, String>,
    /// The last plan and the handles it was made with.
    plan: Mutex<Option<Arc<Prepared>>>,
}

impl WorkflowHandle {
    /// The stored definition.
    pub fn stored(&self) -> &StoredWorkflow {
        &self.stored
    }

    /// The parsed definition (an error if the stored one no longer parses).
    pub fn definition(&self) -> Result<&Workflow, &str> {
        self.definition.as_ref().map_err(|e| e.as_str())
    }
}

/// A plan and the function handles it runs, by step index.
pub struct Prepared {
    plan: Plan,
    handles: Vec<Arc<FunctionHandle>>,
}

impl Prepared {
    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}

/// Why a plan couldn't be made.
enum PlanError {
    Invalid(Invalid),
    Host(Error),
}

/// What a run starts from.
pub struct WorkflowInput {
    /// The input, read whole (the server reads it with
    /// [`Executor::read_input`]).
    pub body: Bytes,
    /// Its reservation in the node's buffer budget.
    pub buffered: Buffered,
    /// Its content type.
    pub content_type: Option<HeaderValue>,
    /// Run only the steps after this one, the body being its output (a
    /// hybrid run: the steps up to it ran elsewhere, e.g. in a browser).
    pub after: Option<String>,
    /// `REMOTE_ADDR` of every step.
    pub remote_addr: String,
    /// `SERVER_NAME` of every step.
    pub server_name: String,
    /// `SERVER_PORT` of every step.
    pub server_port: u16,
}

/// A run's answer: the output step's.
#[derive(Debug)]
pub struct WorkflowOutput {
    /// HTTP status (2xx or 3xx: an error status fails the run).
    pub status: u16,
    /// The output step's headers.
    pub headers: HeaderMap,
    /// The output.
    pub body: Bytes,
    /// The run's record (its id, makespan and step timings).
    pub record: WorkflowActivation,
}

impl Executor {
    /// The workflow `name` of `namespace`.
    pub fn workflow(&self, namespace: &str, name: &str) -> Option<Arc<WorkflowHandle>> {
        self.workflows
            .read()
            .unwrap()
            .get(namespace)
            .and_then(|w| w.get(name))
            .cloned()
    }

    /// The workflows of `namespace` (of every namespace when `None`), by
    /// namespace and name.
    pub fn workflows(&self, namespace: Option<&str>) -> Vec<Arc<WorkflowHandle>> {
        let mut v: Vec<_> = self
            .workflows
            .read()
            .unwrap()
            .iter()
            .filter(|(ns, _)| namespace.is_none_or(|n| n == ns.as_str()))
            .flat_map(|(_, w)| w.values().cloned())
            .collect();
        v.sort_by(|a, b| {
            (&a.stored.namespace, &a.stored.name).cmp(&(&b.stored.namespace, &b.stored.name))
        });
        v
    }

    pub(crate) fn install_workflow(&self, stored: StoredWorkflow) -> Arc<WorkflowHandle> {
        let definition = wisp_workflow::parse(stored.definition.as_bytes()).map_err(|e| {
            let why = format!("the stored definition no longer parses ({e}); redeploy it");
            tracing::error!(workflow = %stored.name, "{why}");
            why
        });
        let h = Arc::new(WorkflowHandle {
            stored,
            definition,
            plan: Mutex::new(None),
        });
        self.workflows
            .write()
            .unwrap()
            .entry(h.stored.namespace.clone())
            .or_default()
            .insert(h.stored.name.clone(), h.clone());
        h
    }

    /// Validate `source` (YAML or JSON) against the functions deployed in
    /// `namespace` and store it as that namespace's workflow `name`. Returns
    /// the handle and whether the definition changed. An invalid definition
    /// is a 400 naming the step.
    pub async fn deploy_workflow(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        source: Bytes,
    ) -> Result<(Arc<WorkflowHandle>, bool), Error> {
        wisp_core::validate_name(name).map_err(|m| {
            Error::new(
                ErrorKind::BadRequest,
                m.replacen("function name", "workflow name", 1),
            )
        })?;
        let def = wisp_workflow::parse(&source)
            .map_err(|e| Error::new(ErrorKind::BadRequest, e.to_string()))?;
        let exec = self.clone();
        let (namespace, name) = (namespace.to_string(), name.to_string());
        // Its own task, like a function deploy: validation and the write
        // happen together whatever the client does.
        tokio::spawn(async move {
            let _guard = exec.deploy_lock.lock().await;
            if !exec.namespace_exists(&namespace) {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("namespace {namespace:?} not found"),
                ));
            }
            let prepared = match exec.plan(&namespace, &def).await {
                Ok(p) => p,
                Err(PlanError::Invalid(i)) => {
                    return Err(Error::new(ErrorKind::BadRequest, i.to_string()));
                }
                Err(PlanError::Host(e)) => return Err(e),
            };
            let canonical = serde_json::to_string(&def).expect("a definition serialises");
            let text = String::from_utf8_lossy(&source).into_owned();
            let store = exec.store.clone();
            let (ns, n) = (namespace.clone(), name.clone());
            let (stored, changed) =
                tokio::task::spawn_blocking(move || store.put_workflow(&ns, &n, &canonical, &text))
                    .await
                    .map_err(join_err)?
                    .map_err(store_err)?;
            let h = exec.install_workflow(stored);
            *h.plan.lock().unwrap() = Some(Arc::new(prepared));
            if changed {
                tracing::info!(%namespace, workflow = %name, version = h.stored.version, "workflow deployed");
            }
            Ok((h, changed))
        })
        .await
        .map_err(join_err)?
    }

    /// Remove a workflow; runs in flight finish.
    pub async fn remove_workflow(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
    ) -> Result<bool, Error> {
        let (ns, n) = (namespace.to_string(), name.to_string());
        let (namespace, name) = (ns.clone(), n.clone());
        self.store_change(
            move |store| store.delete_workflow(&ns, &n),
            move |exec, existed| {
                let mut all = exec.workflows.write().unwrap();
                if let Some(w) = all.get_mut(&namespace) {
                    w.remove(&name);
                    if w.is_empty() {
                        all.remove(&namespace);
                    }
                }
                existed
            },
        )
        .await
    }

    /// Recent runs of `namespace`'s workflows, newest first, optionally of
    /// one workflow (records that no longer parse are left out).
    pub async fn workflow_runs(
        &self,
        namespace: String,
        workflow: Option<String>,
        limit: u32,
    ) -> Result<Vec<WorkflowActivation>, Error> {
        self.flush().await;
        let store = self.store.clone();
        let runs = tokio::task::spawn_blocking(move || {
            store.list_workflow_runs(Some(&namespace), workflow.as_deref(), limit)
        })
        .await
        .map_err(join_err)?
        .map_err(store_err)?;
        Ok(runs
            .iter()
            .filter_map(|r| serde_json::from_str(&r.record).ok())
            .collect())
    }

    /// One run with the activation records of its steps (every step that
    /// started, including those cancelled when the run failed).
    pub async fn workflow_run(
        &self,
        id: String,
    ) -> Result<Option<(WorkflowActivation, Vec<wisp_core::Activation>)>, Error> {
        self.flush().await;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let Some(r) = store.get_workflow_run(&id)? else {
                return Ok(None);
            };
            let steps = store.child_activations(&id)?;
            Ok(serde_json::from_str(&r.record)
                .ok()
                .map(|mut rec: WorkflowActivation| {
                    // The row's namespace is the one access is checked against.
                    rec.namespace = r.namespace;
                    (rec, steps)
                }))
        })
        .await
        .map_err(join_err)?
        .map_err(store_err)
    }

    /// Resolve every step's function in `namespace` and validate: the one
    /// path deploys and runs share.
    async fn plan(&self, namespace: &str, def: &Workflow) -> Result<Prepared, PlanError> {
        let mut found: HashMap<FunctionRef, Result<Arc<FunctionHandle>, String>> = HashMap::new();
        for s in &def.steps {
            let f = FunctionRef {
                name: s.function.clone(),
                version: s.version,
                digest: s.digest.clone(),
            };
            if found.contains_key(&f) {
                continue;
            }
            let r = match self.resolve(namespace, &f).await {
                Ok(h) => Ok(h),
                Err(e) if e.kind == ErrorKind::NotFound => Err(e.message),
                Err(e) => return Err(PlanError::Host(e)),
            };
            found.insert(f, r);
        }
        let catalog = |f: &FunctionRef| match found.get(f) {
            Some(Ok(h)) => match h.broken() {
                Some(why) => Err(format!("{f} can't be served: {why}")),
                None => Ok(resolved(h)),
            },
            Some(Err(m)) => Err(m.clone()),
            None => Err(format!("{f} not found")),
        };
        let plan = wisp_workflow::validate(def, &catalog).map_err(PlanError::Invalid)?;
        let handles = plan
            .steps
            .iter()
            .map(|s| match &found[&s.function] {
                Ok(h) => h.clone(),
                Err(_) => unreachable!("validated"),
            })
            .collect();
        Ok(Prepared { plan, handles })
    }

    /// The plan to run `wf` with: the last one while every step still
    /// resolves to the same handle, else a new one (a function was
    /// redeployed, rolled back or removed). A definition that no longer
    /// validates is a 503 naming the step.
    pub async fn prepare_workflow(&self, wf: &WorkflowHandle) -> Result<Arc<Prepared>, Error> {
        let def = wf.definition.as_ref().map_err(|why| {
            Error::new(
                ErrorKind::Unavailable,
                format!("workflow {:?}: {why}", wf.stored.name),
            )
        })?;
        let cached = wf.plan.lock().unwrap().clone();
        if let Some(p) = cached
            && p.plan.steps.iter().zip(&p.handles).all(|(s, h)| {
                self.known(&wf.stored.namespace, &s.function)
                    .is_some_and(|k| Arc::ptr_eq(&k, h))
            })
        {
            return Ok(p);
        }
        let p = match self.plan(&wf.stored.namespace, def).await {
            Ok(p) => Arc::new(p),
            Err(PlanError::Host(e)) => return Err(e),
            Err(PlanError::Invalid(i)) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "workflow {:?} can't run as deployed: {i} (redeploy the function or the workflow)",
                        wf.stored.name
                    ),
                ));
            }
        };
        *wf.plan.lock().unwrap() = Some(p.clone());
        Ok(p)
    }

    /// Read a workflow's input: at most `max` bytes, reserved from the
    /// node's buffer budget (the reservation comes back with the bytes).
    pub async fn read_input(&self, body: GuestBody, max: u64) -> Result<(Bytes, Buffered), Error> {
        let mut b = Buffered::new(&self.node);
        let bytes = b.collect(body, max).await.map_err(|mut e| {
            if e.kind == ErrorKind::PayloadTooLarge {
                e.message = format!(
                    "the workflow's input is larger than {max} bytes (the max_body_bytes of the steps reading $input)"
                );
            }
            e
        })?;
        Ok((bytes, b))
    }

    /// [`Executor::run_workflow`] on the guest runtime's fast lane, when
    /// there is one. A step that starts while no other step runs (every step
    /// of a chain) then runs its guest in the engine's own task, on the
    /// engine's thread: no spawn and no cross-thread wake-up between the end
    /// of one step and the start of the next. Steps that start while another
    /// runs get tasks of their own, so branches still run in parallel.
    /// Dropping the future aborts the run.
    pub async fn run_workflow_on_guests(
        self: &Arc<Self>,
        wf: Arc<WorkflowHandle>,
        prepared: Arc<Prepared>,
        input: WorkflowInput,
    ) -> Result<WorkflowOutput, Error> {
        let Some(lanes) = &self.opts.guest_runtime else {
            return self.run_workflow(&wf, &prepared, input).await;
        };
        let n = prepared.plan.steps.len();
        let ahead = Arc::new(AheadSet(
            (0..n).map(|_| Mutex::new(Ahead::Open(None))).collect(),
        ));
        let skip = match &input.after {
            Some(after) => cut_at(&prepared.plan, after).ok().map(|c| c.done),
            None => None,
        };
        let exec = self.clone();
        let (set, p) = (ahead.clone(), prepared.clone());
        let task = lanes.fast().spawn(async move {
            exec.run_workflow_at(&wf, &p, input, Place::Here, Some(&set))
                .await
        });
        let _abort = AbortOnDrop(task.abort_handle());
        // Once the engine is on its way: from this thread, so that waking
        // the lane that makes them costs the engine nothing.
        self.make_ahead(lanes, &prepared, skip.as_deref(), &ahead);
        task.await.map_err(join_err)?
    }

    /// Run `wf` as `prepared` on `input`. Cancel-safe: dropping the future
    /// stops every step and records the run and its steps as cancelled.
    pub async fn run_workflow(
        &self,
        wf: &WorkflowHandle,
        prepared: &Arc<Prepared>,
        input: WorkflowInput,
    ) -> Result<WorkflowOutput, Error> {
        self.run_workflow_at(wf, prepared, input, Place::Spawned, None)
            .await
    }

    /// [`Executor::run_workflow`]; `lone` is where a step that starts while
    /// no other step runs runs its guest ([`Place::Here`] only from a task
    /// on the fast lane); `ahead`, the instances being made for its steps.
    async fn run_workflow_at(
        &self,
        wf: &WorkflowHandle,
        prepared: &Arc<Prepared>,
        input: WorkflowInput,
        lone: Place,
        ahead: Option<&AheadSet>,
    ) -> Result<WorkflowOutput, Error> {
        let plan = &prepared.plan;
        let n = plan.steps.len();
        // Which steps run here: all, or (hybrid) those after `after`.
        let mut slots: Vec<Slot> = (0..n).map(|_| Slot::Waiting).collect();
        let cut = match &input.after {
            Some(after) => {
                Some(cut_at(plan, after).map_err(|m| Error::new(ErrorKind::BadRequest, m))?)
            }
            None => None,
        };
        let t0 = Instant::now();
        let deadline = t0 + plan.timeout;
        if let Some(cut) = &cut {
            for (i, s) in slots.iter_mut().enumerate() {
                if cut.done[i] {
                    *s = Slot::Skipped;
                }
            }
            slots[cut.at] = Slot::Done(Out {
                body: input.body.clone(),
                content_type: input.content_type.clone(),
                end: t0,
                readers_left: plan.steps[cut.at].readers,
                _buffered: None,
            });
        }
        let mut run = Run {
            rec: Some(WorkflowActivation {
                id: new_activation_id(),
                namespace: wf.stored.namespace.clone(),
                workflow: wf.stored.name.clone(),
                version: wf.stored.version,
                start_ms: now_ms(),
                status: ActivationStatus::Success,
                http_status: 0,
                makespan_us: 0,
                bytes_in: input.body.len() as u64,
                bytes_out: 0,
                failed_step: None,
                error: None,
                steps: Vec::new(),
            }),
            records: (0..n).map(|_| None).collect(),
            started: Vec::with_capacity(n),
            streamed: Vec::new(),
            t0,
            cancel: Arc::new(OnceLock::new()),
            exec: self,
        };
        let ctx = StepCtx {
            run_id: run.rec.as_ref().expect("unfinished").id.clone(),
            cancel: run.cancel.clone(),
            remote_addr: input.remote_addr,
            server_name: input.server_name,
            server_port: input.server_port,
        };
        let input = Input {
            body: input.body,
            content_type: input.content_type,
            _buffered: input.buffered,
        };
        let mut pending: Vec<usize> = plan
            .steps
            .iter()
            .map(|s| {
                s.inputs
                    .iter()
                    .filter(|x| matches!(x, Source::Step(k) if !matches!(slots[*k], Slot::Done(_))))
                    .count()
            })
            .collect();
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, s) in plan.steps.iter().enumerate() {
            for src in &s.inputs {
                if let Source::Step(k) = *src {
                    readers[k].push(i);
                }
            }
        }

        let mut state = State {
            plan,
            prepared,
            input: &input,
            slots,
            ctx: &ctx,
            exec: self,
            lone,
            ahead,
        };
        let mut running: FuturesUnordered<StepFuture<'_>> = FuturesUnordered::new();
        let first: Vec<usize> = (0..n)
            .filter(|&i| pending[i] == 0 && matches!(state.slots[i], Slot::Waiting))
            .collect();
        for i in first {
            match state.start(i, &mut run, running.is_empty()) {
                Ok(f) => running.push(f),
                Err(e) => return Err(run.fail_step(plan, prepared, i, e)),
            }
        }
        let (status, headers) = loop {
            let (i, result) = match tokio::time::timeout_at(deadline.into(), running.next()).await {
                Ok(Some(next)) => next,
                Ok(None) => {
                    return Err(run.fail(Error::new(
                        ErrorKind::Internal,
                        "the workflow stalled with no step running",
                    )));
                }
                Err(_elapsed) => {
                    let still: Vec<String> = state
                        .slots
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| matches!(s, Slot::Running))
                        .map(|(i, _)| format!("{:?}", plan.steps[i].name))
                        .collect();
                    let msg = format!(
                        "workflow {:?} ran past its {:?} timeout; still running: {}",
                        wf.stored.name,
                        plan.timeout,
                        still.join(", ")
                    );
                    run.cancel.get_or_init(|| {
                        format!("the workflow ran past its {:?} timeout", plan.timeout)
                    });
                    drop(running);
                    return Err(run.fail(Error::new(ErrorKind::Timeout, msg)));
                }
            };
            let done = match result {
                Ok(d) => d,
                Err(e) => {
                    run.cancel.get_or_init(|| {
                        format!("the workflow failed at step {:?}", plan.steps[i].name)
                    });
                    drop(running);
                    return Err(run.fail_step(plan, prepared, i, e));
                }
            };
            run.records[i] = Some(done.record(&plan.steps[i], &prepared.handles[i], t0));
            let StepDone {
                status,
                headers,
                content_type,
                produced: Produced { body, ended },
                ..
            } = done;
            state.slots[i] = match body {
                Product::Full(bytes, buffered) => Slot::Done(Out {
                    body: bytes,
                    content_type,
                    end: *ended.get().expect("a full body has ended"),
                    readers_left: plan.steps[i].readers,
                    _buffered: buffered,
                }),
                Product::Stream(body) => {
                    run.streamed.push((i, ended));
                    Slot::Streaming(Some((body, content_type)))
                }
            };
            if i == plan.output {
                break (status, headers);
            }
            for &j in &readers[i] {
                pending[j] -= 1;
                if pending[j] == 0 {
                    match state.start(j, &mut run, running.is_empty()) {
                        Ok(f) => running.push(f),
                        Err(e) => {
                            run.cancel.get_or_init(|| {
                                format!("the workflow failed at step {:?}", plan.steps[j].name)
                            });
                            drop(running);
                            return Err(run.fail_step(plan, prepared, j, e));
                        }
                    }
                }
            }
        };
        drop(running);
        let Slot::Done(out) = std::mem::replace(&mut state.slots[plan.output], Slot::Skipped)
        else {
            unreachable!("the output is read whole")
        };
        Ok(run.succeed(status, headers, out.body))
    }
}

/// A run's instances made ahead, by step.
struct AheadSet(Vec<Mutex<Ahead>>);

enum Ahead {
    /// The step has not started; an instance may be on its way.
    Open(Option<Making>),
    /// The step started (or never will): nothing more is put here.
    Closed,
}

impl AheadSet {
    /// Step `i` starts: its instance being made, if any; later ones are
    /// not kept.
    fn take(&self, i: usize) -> Option<Making> {
        match std::mem::replace(&mut *self.0[i].lock().unwrap(), Ahead::Closed) {
            Ahead::Open(m) => m,
            Ahead::Closed => None,
        }
    }

    /// Keep `m` for step `i` unless it has started; false (and `m`
    /// dropped, which stops it) if it has.
    fn put(&self, i: usize, m: Making) -> bool {
        match &mut *self.0[i].lock().unwrap() {
            Ahead::Open(slot) => {
                *slot = Some(m);
                true
            }
            Ahead::Closed => false,
        }
    }
}

/// At most this many instances are made ahead per run (the steps first
/// in the definition's order), so a long workflow does not hold an
/// instance for every step from its start.
const MAX_AHEAD: usize = 8;

impl Executor {
    /// Start making the instances of `prepared`'s steps that read other
    /// steps (the first ones start at once) and are warm command modules,
    /// beside the engine (see docs/architecture.md, "Instances made
    /// ahead"); `skip`: steps a hybrid run does not run.
    fn make_ahead(
        &self,
        lanes: &wisp_runtime::GuestLanes,
        prepared: &Prepared,
        skip: Option<&[bool]>,
        set: &AheadSet,
    ) {
        let eligible = prepared
            .plan
            .steps
            .iter()
            .zip(&prepared.handles)
            .enumerate()
            .filter(|(i, (s, h))| {
                !skip.is_some_and(|k| k[*i])
                    && s.inputs.iter().any(|x| matches!(x, Source::Step(_)))
                    && h.broken.is_none()
            })
            .take(MAX_AHEAD);
        for (i, (s, h)) in eligible {
            if let Some(loaded @ wisp_runtime::Loaded::Command(_)) = h.loaded.get() {
                let Some(m) = Making::start(
                    lanes,
                    &self.node,
                    self.runtime.clone(),
                    loaded.clone(),
                    s.limits.clone(),
                ) else {
                    // No instance slot to spare: the steps make their own.
                    return;
                };
                if !set.put(i, m) {
                    // The step was quicker: it made its own.
                    self.metrics.made_ahead_missed.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// The steps a hybrid run skips, and the step whose output it is given.
struct Cut {
    at: usize,
    done: Vec<bool>,
}

/// Check that running only the steps after `after` needs nothing but its
/// output: every other step is one of its ancestors (run elsewhere) or
/// reads only `after` and steps after it.
fn cut_at(plan: &Plan, after: &str) -> Result<Cut, String> {
    let at = plan
        .index_of(after)
        .ok_or_else(|| format!("after={after:?} is not a step of this workflow"))?;
    if at == plan.output {
        return Err(format!(
            "after={after:?} is the output step: there is nothing left to run"
        ));
    }
    let mut done = plan.ancestors(at);
    done[at] = true;
    for (j, s) in plan.steps.iter().enumerate() {
        if done[j] {
            continue;
        }
        for src in &s.inputs {
            let fine = match *src {
                Source::Step(k) => !done[k] || k == at,
                Source::Input => false,
            };
            if !fine {
                let what = match *src {
                    Source::Step(k) => format!("step {:?}", plan.steps[k].name),
                    Source::Input => "$input".to_string(),
                };
                return Err(format!(
                    "step {:?} reads {what}, which a run after={after:?} does not have: \
                     the steps after the cut may read only {after:?} and each other",
                    s.name
                ));
            }
        }
    }
    if done[plan.output] {
        return Err(format!(
            "the output step {:?} comes before {after:?}",
            plan.steps[plan.output].name
        ));
    }
    Ok(Cut { at, done })
}

type StepFuture<'a> = Pin<Box<dyn Future<Output = (usize, Result<StepDone, Error>)> + Send + 'a>>;

/// The workflow's input.
struct Input {
    body: Bytes,
    content_type: Option<HeaderValue>,
    _buffered: Buffered,
}

/// A finished step's output, kept until its readers have it.
struct Out {
    body: Bytes,
    content_type: Option<HeaderValue>,
    /// When the step ended.
    end: Instant,
    readers_left: usize,
    _buffered: Option<Buffered>,
}

enum Slot {
    Waiting,
    Running,
    Done(Out),
    /// A component's body being streamed to its one reader: taken when the
    /// reader starts.
    Streaming(Option<(GuestBody, Option<HeaderValue>)>),
    /// Run elsewhere (hybrid), or read by all its readers already.
    Skipped,
}

/// What every step of a run shares.
struct StepCtx {
    run_id: String,
    cancel: CancelReason,
    remote_addr: String,
    server_name: String,
    server_port: u16,
}

struct State<'a> {
    plan: &'a Plan,
    prepared: &'a Arc<Prepared>,
    input: &'a Input,
    slots: Vec<Slot>,
    ctx: &'a StepCtx,
    exec: &'a Executor,
    /// Where a step that starts alone runs its guest.
    lone: Place,
    /// Instances being made ahead, by step.
    ahead: Option<&'a AheadSet>,
}

impl<'a> State<'a> {
    /// Build step `i`'s body from its inputs (which have all ended) and
    /// start it; `alone`: no other step is running.
    fn start(&mut self, i: usize, run: &mut Run<'_>, alone: bool) -> Result<StepFuture<'a>, Error> {
        let plan = self.plan;
        let step: &'a PlannedStep = &plan.steps[i];
        let mut ready = run.t0;
        let mut merged_buf = None;
        let (body, content_type) = if step.stream {
            let Source::Step(k) = step.inputs[0] else {
                unreachable!("validated: a streamed input is a step")
            };
            let Slot::Streaming(taken) = &mut self.slots[k] else {
                unreachable!("a streamed input's producer streams")
            };
            let (body, ct) = taken.take().expect("one reader");
            self.slots[k] = Slot::Skipped;
            ready = run.records[k]
                .as_ref()
                .map_or(ready, |r| run.t0 + Duration::from_micros(r.end_us));
            (RequestBody::Stream(body), ct)
        } else {
            let mut parts: Vec<(&str, Bytes, Option<HeaderValue>)> =
                Vec::with_capacity(step.inputs.len());
            for src in &step.inputs {
                match *src {
                    Source::Input => parts.push((
                        wisp_workflow::INPUT,
                        self.input.body.clone(),
                        self.input.content_type.clone(),
                    )),
                    Source::Step(k) => {
                        let Slot::Done(out) = &self.slots[k] else {
                            unreachable!("inputs end before their readers start")
                        };
                        ready = ready.max(out.end);
                        parts.push((
                            &plan.steps[k].name,
                            out.body.clone(),
                            out.content_type.clone(),
                        ));
                    }
                }
            }
            let one = parts.len() == 1 && step.merge == wisp_workflow::Merge::Concat;
            let (body, ct) = if one {
                let (_, b, ct) = parts.pop().expect("one part");
                (b, ct)
            } else {
                let views: Vec<Part<'_>> = parts
                    .iter()
                    .map(|(name, b, ct)| Part {
                        name,
                        bytes: b,
                        content_type: ct.as_ref().and_then(|v| v.to_str().ok()),
                    })
                    .collect();
                let h = &self.prepared.handles[i];
                let m = merge(step.merge, &views).map_err(|m| {
                    step_error(
                        step,
                        h,
                        Error::new(ErrorKind::BadRequest, format!("merging its inputs: {m}")),
                    )
                })?;
                let mut b = Buffered::new(&self.exec.node);
                b.take(m.body.len()).map_err(|e| step_error(step, h, e))?;
                merged_buf = Some(b);
                (
                    Bytes::from(m.body),
                    m.content_type.and_then(|c| HeaderValue::try_from(c).ok()),
                )
            };
            // Readers that have their copy let go of the producer's.
            for src in &step.inputs {
                if let Source::Step(k) = *src
                    && let Slot::Done(out) = &mut self.slots[k]
                {
                    out.readers_left -= 1;
                    if out.readers_left == 0 {
                        self.slots[k] = Slot::Skipped;
                    }
                }
            }
            (RequestBody::Full(body), ct)
        };
        self.slots[i] = Slot::Running;
        run.started.push(i);
        let h = self.prepared.handles[i].clone();
        let exec = self.exec;
        let ctx = self.ctx;
        let place = if alone { self.lone } else { Place::Spawned };
        let ahead = self.ahead.and_then(|a| a.take(i));
        // A streaming reader takes this step's body as it comes.
        let collect = !plan
            .steps
            .iter()
            .any(|t| t.stream && t.inputs.first() == Some(&Source::Step(i)));
        Ok(Box::pin(async move {
            let r = exec
                .call_step(
                    &h,
                    step,
                    body,
                    content_type,
                    ctx,
                    ready,
                    collect,
                    place,
                    ahead,
                )
                .await;
            drop(merged_buf);
            (i, r)
        }))
    }
}

/// What a step produced.
struct Produced {
    body: Product,
    /// When its body ended (set later for a streamed body).
    ended: Arc<OnceLock<Instant>>,
}

enum Product {
    Full(Bytes, Option<Buffered>),
    Stream(GuestBody),
}

/// A step that answered 2xx/3xx.
struct StepDone {
    status: u16,
    headers: HeaderMap,
    content_type: Option<HeaderValue>,
    produced: Produced,
    activation_id: String,
    cold: bool,
    ready: Instant,
    called: Instant,
    wait: Duration,
    init: Duration,
    instantiate: Duration,
    guest_start: Instant,
    end: Instant,
    bytes_in: u64,
    bytes_out: u64,
}

impl StepDone {
    fn record(&self, s: &PlannedStep, h: &FunctionHandle, t0: Instant) -> StepRecord {
        let us = |d: Duration| d.as_micros() as u64;
        let at = |t: Instant| us(t.saturating_duration_since(t0));
        // Offsets first, spans from them, so that they add up exactly.
        let (ready, called, start, end) = (
            at(self.ready),
            at(self.called),
            at(self.guest_start),
            at(self.end),
        );
        StepRecord {
            step: s.name.clone(),
            function: h.version.name.clone(),
            version: h.version.version,
            activation_id: Some(self.activation_id.clone()),
            status: ActivationStatus::Success,
            http_status: self.status,
            cold: self.cold,
            ready_us: ready,
            start_us: start,
            end_us: end,
            delay_us: start.saturating_sub(ready),
            handoff_us: called.saturating_sub(ready),
            wait_us: us(self.wait),
            init_us: us(self.init),
            instantiate_us: us(self.instantiate),
            run_us: end.saturating_sub(start),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            error: None,
        }
    }
}

/// A streamed body that notes when it ended, and stops the producer's
/// instance if its reader goes away first.
struct Tap {
    inner: GuestBody,
    ended: Arc<OnceLock<Instant>>,
    _instance: Option<AbortOnDrop>,
}

impl http_body::Body for Tap {
    type Data = Bytes;
    type Error = wisp_runtime::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let p = Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(None) = &p {
            let _ = self.ended.set(Instant::now());
        }
        p
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Executor {
    /// One step: a POST of `body` to the step's function through
    /// [`Executor::invoke_as`], under the step's limits, recorded as part of
    /// the run. An error status fails the step.
    #[allow(clippy::too_many_arguments)]
    async fn call_step(
        &self,
        h: &Arc<FunctionHandle>,
        step: &PlannedStep,
        body: RequestBody,
        content_type: Option<HeaderValue>,
        ctx: &StepCtx,
        ready: Instant,
        collect: bool,
        place: Place,
        ahead: Option<Making>,
    ) -> Result<StepDone, Error> {
        let called = Instant::now();
        let bytes_in = match &body {
            RequestBody::Full(b) => b.len() as u64,
            RequestBody::Stream(_) => 0,
        };
        // A POST to the server's own name, as a client's request would be
        // (wasi:http needs an authority; command modules see HTTP_HOST).
        let mut headers = HeaderMap::new();
        if let Ok(host) = HeaderValue::from_str(&format!("{}:{}", ctx.server_name, ctx.server_port))
        {
            headers.insert(header::HOST, host);
        }
        if let Some(ct) = &content_type {
            headers.insert(header::CONTENT_TYPE, ct.clone());
        }
        let req = Request {
            method: http::Method::POST,
            path_info: step.path.clone(),
            query: step.query.clone(),
            headers,
            body,
            remote_addr: ctx.remote_addr.clone(),
            server_name: ctx.server_name.clone(),
            server_port: ctx.server_port,
        };
        let link = (ctx.run_id.as_str(), step.name.as_str(), ctx.cancel.clone());
        let resp = self
            .invoke_as(h, req, &step.limits, Some(link), GuestAt { place, ahead })
            .await
            .map_err(|e| step_error(step, h, e))?;
        // Until its body is in, a component instance belongs to this step.
        let instance = resp.instance.map(AbortOnDrop);
        let ct = resp.headers.get(header::CONTENT_TYPE).cloned();
        let ended = Arc::new(OnceLock::new());
        let (product, end, bytes_out) = match resp.body {
            ResponseBody::Full(b) => {
                let end = resp.guest_end.unwrap_or_else(Instant::now);
                let n = b.len() as u64;
                // Held until its readers have it: counted like a request body.
                let mut buf = Buffered::new(&self.node);
                buf.take(b.len()).map_err(|e| step_error(step, h, e))?;
                (Product::Full(b, Some(buf)), end, n)
            }
            ResponseBody::Stream(s) if collect || resp.status >= 400 => {
                let mut buf = Buffered::new(&self.node);
                let b = collect_output(s, &mut buf, step.limits.max_response_bytes)
                    .await
                    .map_err(|e| step_error(step, h, e))?;
                drop(instance);
                let n = b.len() as u64;
                (Product::Full(b, Some(buf)), Instant::now(), n)
            }
            ResponseBody::Stream(s) => {
                let tap = Tap {
                    inner: s,
                    ended: ended.clone(),
                    _instance: instance,
                };
                (Product::Stream(tap.boxed_unsync()), Instant::now(), 0)
            }
        };
        if let Product::Full(b, _) = &product {
            let _ = ended.set(end);
            if resp.status >= 400 {
                let shown = &b[..b.len().min(512)];
                let mut e = Error::new(
                    ErrorKind::StepFailed,
                    format!(
                        "answered {}: {}",
                        resp.status,
                        String::from_utf8_lossy(shown).trim_end()
                    ),
                );
                e.activation_id = Some(resp.activation_id.clone());
                return Err(step_error(step, h, e));
            }
        }
        Ok(StepDone {
            status: resp.status,
            headers: resp.headers,
            content_type: ct,
            produced: Produced {
                body: product,
                ended,
            },
            activation_id: resp.activation_id,
            cold: resp.cold,
            ready,
            called,
            wait: resp.wait,
            init: resp.init,
            instantiate: resp.instantiate,
            guest_start: resp.guest_start,
            end,
            bytes_in,
            bytes_out,
        })
    }
}

/// A component step's body, read whole into host memory reserved from the
/// node's buffer budget.
async fn collect_output(body: GuestBody, buf: &mut Buffered, max: u64) -> Result<Bytes, Error> {
    let mut body = body;
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Error::new(
                    ErrorKind::ResponseTooLarge,
                    format!("response exceeded the {max}-byte limit"),
                )
            } else {
                Error::new(ErrorKind::Trap, format!("reading the response body: {e}"))
            }
        })?;
        if let Ok(data) = frame.into_data() {
            buf.take(data.len())?;
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// A step's error as the run's: the step and function named.
fn step_error(step: &PlannedStep, h: &FunctionHandle, mut e: Error) -> Error {
    e.message = format!(
        "step {:?} (function {:?} v{}): {}",
        step.name, h.version.name, h.version.version, e.message
    );
    e
}

/// A run being recorded; dropped unfinished (the client went away), it
/// records a cancellation.
struct Run<'a> {
    rec: Option<WorkflowActivation>,
    /// Step records by plan index.
    records: Vec<Option<StepRecord>>,
    /// Plan indices in the order the steps started.
    started: Vec<usize>,
    /// Steps whose bodies streamed to a reader: when each body ended.
    streamed: Vec<(usize, Arc<OnceLock<Instant>>)>,
    t0: Instant,
    cancel: CancelReason,
    exec: &'a Executor,
}

impl Run<'_> {
    fn finish(&mut self, status: ActivationStatus, http_status: u16) -> WorkflowActivation {
        let mut rec = self.rec.take().expect("a run ends once");
        rec.status = status;
        rec.http_status = http_status;
        rec.makespan_us = self.t0.elapsed().as_micros() as u64;
        for (i, ended) in &self.streamed {
            if let (Some(r), Some(t)) = (self.records[*i].as_mut(), ended.get()) {
                r.end_us = t.saturating_duration_since(self.t0).as_micros() as u64;
                r.run_us = r.end_us.saturating_sub(r.start_us);
            }
        }
        for &i in &self.started {
            if let Some(r) = self.records[i].take() {
                rec.steps.push(r);
            }
        }
        let run = wisp_store::WorkflowRun {
            id: rec.id.clone(),
            namespace: rec.namespace.clone(),
            workflow: rec.workflow.clone(),
            start_ms: rec.start_ms,
            record: serde_json::to_string(&rec).expect("a record serialises"),
        };
        self.exec.recorder.send_msg(Msg::Run(run));
        rec
    }

    fn succeed(mut self, status: u16, headers: HeaderMap, body: Bytes) -> WorkflowOutput {
        self.rec.as_mut().expect("unfinished").bytes_out = body.len() as u64;
        let record = self.finish(ActivationStatus::Success, status);
        WorkflowOutput {
            status,
            headers,
            body,
            record,
        }
    }

    /// Record the run's failure; hand back the error carrying the run's id.
    fn fail(&mut self, mut e: Error) -> Error {
        let rec = self.rec.as_mut().expect("unfinished");
        rec.error = Some(e.message.clone());
        let id = rec.id.clone();
        self.finish(status_of(e.kind), e.kind.http_status());
        e.activation_id = Some(id);
        e
    }

    /// Step `i` failed the run: record it too.
    fn fail_step(&mut self, plan: &Plan, prepared: &Prepared, i: usize, e: Error) -> Error {
        let (s, h) = (&plan.steps[i], &prepared.handles[i]);
        let end = self.t0.elapsed().as_micros() as u64;
        self.records[i] = Some(StepRecord {
            step: s.name.clone(),
            function: h.version.name.clone(),
            version: h.version.version,
            activation_id: e.activation_id.clone(),
            status: status_of(e.kind),
            http_status: e.kind.http_status(),
            cold: false,
            ready_us: 0,
            start_us: 0,
            end_us: end,
            delay_us: 0,
            handoff_us: 0,
            wait_us: 0,
            init_us: 0,
            instantiate_us: 0,
            run_us: 0,
            bytes_in: 0,
            bytes_out: 0,
            error: Some(e.message.clone()),
        });
        if !self.started.contains(&i) {
            self.started.push(i);
        }
        self.rec.as_mut().expect("unfinished").failed_step = Some(s.name.clone());
        self.fail(e)
    }
}

fn status_of(kind: ErrorKind) -> ActivationStatus {
    match kind {
        ErrorKind::Timeout => ActivationStatus::Timeout,
        ErrorKind::TooManyRequests | ErrorKind::Unavailable => ActivationStatus::Rejected,
        _ => ActivationStatus::Error,
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        if let Some(rec) = self.rec.as_mut() {
            rec.error = Some(CLIENT_GONE.into());
            self.finish(ActivationStatus::Cancelled, 499);
        }
    }
}
