//! Actions: `PUT` (create, or update with `overwrite=true`, merging with
//! the current one as OpenWhisk does), `GET` (with or without the code),
//! list (`limit`, `skip`) and `DELETE`.
//!
//! A Wasm action is a Wisp function of its namespace: the module is
//! compiled, stored and served by the executor like any other, and its
//! OpenWhisk fields travel with its version (`meta.openwhisk`), so an
//! update is a new version and a rollback restores them too. A function
//! deployed through `/v1` is an action with the defaults. A sequence has no
//! module: it is a stored document in the namespace's action collection.

use super::entities::{self, OwLimits, kv_set};
use super::{Controller, NsName, NsOnly, OwError, PutQuery, Subject, json_object, ok_json};
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use wisp_core::Abi;
use wisp_executor::{FunctionHandle, Source};
use wisp_store::Put;

/// The kinds a Wasm action may be created with (`wasm:0.1` is the WOW
/// study's).
pub const WASM_KINDS: [&str; 2] = ["wasm:0.1", "wasm"];
/// Longest sequence (atomic actions, nested sequences inlined).
pub const MAX_SEQUENCE: usize = 50;

/// An action's OpenWhisk fields.
#[derive(Debug, Clone)]
pub(crate) struct Ow {
    pub kind: String,
    pub parameters: Vec<Value>,
    pub annotations: Vec<Value>,
    pub limits: OwLimits,
    pub version: String,
    pub publish: bool,
}

impl Ow {
    fn from_doc(doc: &Value, limits: OwLimits) -> Ow {
        let list = |k: &str| {
            doc.get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        Ow {
            kind: doc["kind"].as_str().unwrap_or(WASM_KINDS[0]).to_string(),
            parameters: list("parameters"),
            annotations: list("annotations"),
            limits,
            version: doc["version"].as_str().unwrap_or("0.0.1").to_string(),
            publish: doc["publish"].as_bool().unwrap_or(false),
        }
    }

    fn doc(&self) -> Value {
        json!({
            "kind": self.kind,
            "parameters": self.parameters,
            "annotations": self.annotations,
            "limits": self.limits.json(),
            "version": self.version,
            "publish": self.publish,
        })
    }
}

/// An action as resolved for an operation.
pub(crate) enum Action {
    /// A Wasm action: the served function.
    Wasm(Arc<FunctionHandle>, Ow),
    /// A sequence: its components (`/ns/name`).
    Sequence {
        ow: Ow,
        components: Vec<String>,
        updated_ms: i64,
    },
}

impl Action {
    pub(crate) fn ow(&self) -> &Ow {
        match self {
            Action::Wasm(_, ow) | Action::Sequence { ow, .. } => ow,
        }
    }
}

/// The OpenWhisk fields of a served function (defaults for one deployed
/// through `/v1`).
pub(crate) fn ow_of(h: &FunctionHandle) -> Ow {
    let v = h.version();
    let meta = v.meta.as_ref().and_then(|m| m.get("openwhisk"));
    let limits = OwLimits::of(meta, &v.config.limits);
    match meta {
        Some(m) => Ow::from_doc(m, limits),
        None => Ow {
            kind: match v.abi {
                Abi::Command => WASM_KINDS[0].into(),
                Abi::Http => "wasi:http".into(),
            },
            parameters: Vec::new(),
            annotations: vec![json!({"key": "exec", "value": WASM_KINDS[0]})],
            limits,
            version: format!("0.0.{}", v.version),
            publish: false,
        },
    }
}

impl Controller {
    /// The action `name` of `ns`, if there is one.
    pub(crate) async fn resolve(&self, ns: &str, name: &str) -> Result<Option<Action>, OwError> {
        if let Some(h) = self.exec.get(ns, name) {
            let ow = ow_of(&h);
            return Ok(Some(Action::Wasm(h, ow)));
        }
        let store = self.exec.store().clone();
        let (n, a) = (ns.to_string(), name.to_string());
        let e = tokio::task::spawn_blocking(move || store.get_entity(&n, "actions", &a))
            .await
            .map_err(|e| OwError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(store_error)?;
        Ok(e.map(|e| {
            let limits =
                OwLimits::parse(e.doc.get("limits"), OwLimits::default()).unwrap_or_default();
            let components = e.doc["components"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Action::Sequence {
                ow: Ow::from_doc(&e.doc, limits),
                components,
                updated_ms: e.updated_ms,
            }
        }))
    }
}

pub(crate) fn store_error(e: wisp_store::Error) -> OwError {
    match e {
        wisp_store::Error::NotFound(_) => OwError::not_found(),
        wisp_store::Error::Conflict(_) => OwError::conflict(),
        other => {
            tracing::error!(error = %other, "openwhisk api: store error");
            OwError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
        }
    }
}

/// An action as OpenWhisk shows it.
fn action_json(ns: &str, name: &str, a: &Action, code: Option<String>) -> Value {
    let ow = a.ow();
    let (exec, updated) = match a {
        Action::Wasm(h, _) => {
            let mut e = json!({ "kind": ow.kind, "binary": true });
            if let Some(c) = code {
                e["code"] = c.into();
            }
            (e, h.version().created_ms)
        }
        Action::Sequence {
            components,
            updated_ms,
            ..
        } => (
            json!({ "kind": "sequence", "components": components }),
            *updated_ms,
        ),
    };
    json!({
        "namespace": ns,
        "name": name,
        "version": ow.version,
        "publish": ow.publish,
        "exec": exec,
        "annotations": ow.annotations,
        "parameters": ow.parameters,
        "limits": ow.limits.json(),
        "updated": updated,
    })
}

#[derive(Deserialize, Default)]
pub(crate) struct GetQuery {
    #[serde(default)]
    code: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    #[serde(default)]
    pub(crate) limit: Option<String>,
    #[serde(default)]
    pub(crate) skip: Option<String>,
}

pub(crate) fn flag(v: &Option<String>) -> bool {
    v.as_deref() == Some("true")
}

/// `limit` (0–`max`, 0 meaning `max`; default `default`) and `skip`, with
/// OpenWhisk's messages.
pub(crate) fn page(
    q: &ListQuery,
    collection: &str,
    default: u32,
    max: u32,
) -> Result<(u32, u32), OwError> {
    let int = |v: &str| -> Result<i64, OwError> {
        v.parse().map_err(|_| {
            OwError::bad(format!(
                "The value '{v}' is not an integer for {collection}."
            ))
        })
    };
    let limit = match q.limit.as_deref() {
        None => default,
        Some(v) => {
            let n = int(v)?;
            if !(0..=max as i64).contains(&n) {
                return Err(OwError::bad(format!(
                    "The value '{n}' is not in the range of 0 to {max} for {collection}."
                )));
            }
            if n == 0 { max } else { n as u32 }
        }
    };
    let skip = match q.skip.as_deref() {
        None => 0,
        Some(v) => {
            let n = int(v)?;
            if n < 0 {
                return Err(OwError::bad(format!(
                    "The value '{n}' is not greater than or equal to 0 for {collection}."
                )));
            }
            n.min(u32::MAX as i64) as u32
        }
    };
    Ok((limit, skip))
}

pub(crate) fn ns_exists(ctl: &Controller, ns: &str) -> Result<(), OwError> {
    if ctl.exec.namespace_exists(ns) {
        Ok(())
    } else {
        Err(OwError::not_found())
    }
}

/// `GET /namespaces/{ns}/actions`.
pub(crate) async fn list(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsOnly>,
    Query(q): Query<ListQuery>,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    ns_exists(&ctl, &ns)?;
    let (limit, skip) = page(&q, "actions", 30, 200)?;
    let mut all: Vec<(String, Value)> = Vec::new();
    for f in ctl.exec.list(Some(&ns)).await? {
        if let Some(h) = ctl.exec.get(&ns, &f.name) {
            let a = Action::Wasm(h.clone(), ow_of(&h));
            all.push((f.name.clone(), action_json(&ns, &f.name, &a, None)));
        }
    }
    let store = ctl.exec.store().clone();
    let n = ns.clone();
    let seqs =
        tokio::task::spawn_blocking(move || store.list_entities(Some(&n), "actions", u32::MAX, 0))
            .await
            .map_err(|e| OwError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(store_error)?;
    for e in seqs {
        if let Some(a) = ctl.resolve(&ns, &e.name).await? {
            all.push((e.name.clone(), action_json(&ns, &e.name, &a, None)));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let page: Vec<Value> = all
        .into_iter()
        .skip(skip as usize)
        .take(limit as usize)
        .map(|(_, v)| v)
        .collect();
    Ok(ok_json(StatusCode::OK, Value::Array(page)))
}

/// `GET /namespaces/{ns}/actions/{name}[?code=false]`.
pub(crate) async fn get(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsName>,
    Query(q): Query<GetQuery>,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    let a = ctl
        .resolve(&ns, &p.name)
        .await?
        .ok_or_else(OwError::not_found)?;
    let code = match (&a, q.code.as_deref() != Some("false")) {
        (Action::Wasm(..), true) => {
            let (_, wasm) = ctl
                .exec
                .module(&ns, &p.name, None)
                .await?
                .ok_or_else(OwError::not_found)?;
            Some(base64::engine::general_purpose::STANDARD.encode(wasm))
        }
        _ => None,
    };
    Ok(ok_json(StatusCode::OK, action_json(&ns, &p.name, &a, code)))
}

/// `DELETE /namespaces/{ns}/actions/{name}`: answers the deleted action.
pub(crate) async fn delete(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsName>,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    let a = ctl
        .resolve(&ns, &p.name)
        .await?
        .ok_or_else(OwError::not_found)?;
    let shown = action_json(&ns, &p.name, &a, None);
    let gone = match a {
        Action::Wasm(..) => ctl.exec.remove(&ns, &p.name).await?,
        Action::Sequence { .. } => {
            let store = ctl.exec.store().clone();
            let (n, name) = (ns.clone(), p.name.clone());
            tokio::task::spawn_blocking(move || store.delete_entity(&n, "actions", &name))
                .await
                .map_err(|e| OwError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                .map_err(store_error)?
        }
    };
    if !gone {
        return Err(OwError::not_found());
    }
    Ok(ok_json(StatusCode::OK, shown))
}

/// `PUT /namespaces/{ns}/actions/{name}[?overwrite=true]`.
pub(crate) async fn put(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsName>,
    Query(q): Query<PutQuery>,
    super::Body(body): super::Body,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    ns_exists(&ctl, &ns)?;
    entities::check_name(&p.name)?;
    let body = json_object(&body)?;
    let overwrite = flag(&q.overwrite);
    let current = ctl.resolve(&ns, &p.name).await?;
    if current.is_some() && !overwrite {
        return Err(OwError::conflict());
    }
    let old = current.as_ref().map(Action::ow);
    let exec = body.get("exec");
    if exec.is_some_and(|e| !e.is_object()) {
        return Err(OwError::malformed("exec must be an object"));
    }
    let kind = match exec.and_then(|e| e.get("kind")) {
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(OwError::malformed("exec.kind must be a string")),
        None if exec.is_some() => return Err(OwError::malformed("exec.kind is required")),
        None => None,
    };
    let is_sequence = match (kind, &current) {
        (Some("sequence"), _) => true,
        (Some(k), _) if WASM_KINDS.contains(&k) => false,
        (Some(k), _) => {
            return Err(OwError::bad(format!(
                "kind '{k}' is not supported by this server: use wasm:0.1 (a wasm32-wasip1 command module, its .wasm in base64 as exec.code) or sequence"
            )));
        }
        (None, Some(Action::Sequence { .. })) => true,
        (None, Some(Action::Wasm(..))) => false,
        (None, None) => return Err(OwError::bad("exec undefined")),
    };
    let limits = OwLimits::parse(
        body.get("limits"),
        old.map(|o| o.limits).unwrap_or_default(),
    )?;
    let kind = if is_sequence {
        "sequence".to_string()
    } else {
        kind.map(str::to_string)
            .or_else(|| old.map(|o| o.kind.clone()))
            .unwrap_or_else(|| WASM_KINDS[0].into())
    };
    let annotations = match body.get("annotations") {
        Some(a) => entities::key_values(Some(a), "annotations")?,
        None => old.map(|o| o.annotations.clone()).unwrap_or_default(),
    };
    let annotations = kv_set(annotations, "exec", Value::String(kind.clone()));
    let version = match body.get("version") {
        Some(Value::String(v)) => v.clone(),
        Some(_) => return Err(OwError::malformed("version must be a string like 0.0.1")),
        None => old
            .map(|o| entities::up_patch(&o.version))
            .unwrap_or_else(|| "0.0.1".into()),
    };
    let publish = match body.get("publish") {
        Some(v) => v
            .as_bool()
            .ok_or_else(|| OwError::malformed("publish must be a boolean"))?,
        None => old.map(|o| o.publish).unwrap_or(false),
    };
    if is_sequence {
        let components = match exec.and_then(|e| e.get("components")) {
            Some(c) => sequence_components(&ctl, &who, &ns, &p.name, c).await?,
            None => match &current {
                Some(Action::Sequence { components, .. }) => components.clone(),
                _ => return Err(OwError::bad("No component specified for the sequence.")),
            },
        };
        let ow = Ow {
            kind: "sequence".into(),
            parameters: vec![json!({"key": "_actions", "value": components})],
            annotations,
            limits,
            version,
            publish,
        };
        let mut doc = ow.doc();
        doc["components"] = json!(components);
        let (n, name) = (ns.clone(), p.name.clone());
        let mode = if overwrite {
            Put::Overwrite
        } else {
            Put::Create
        };
        ctl.exec
            .forget_after(&ns, move |store| {
                store.put_entity(&n, "actions", &name, &doc, mode)
            })
            .await
            .map_err(|e| {
                if e.kind == wisp_core::ErrorKind::Conflict {
                    OwError::conflict()
                } else {
                    e.into()
                }
            })?;
    } else {
        let parameters = match body.get("parameters") {
            Some(v) => entities::key_values(Some(v), "parameters")?,
            None => match &current {
                Some(Action::Wasm(_, o)) => o.parameters.clone(),
                _ => Vec::new(),
            },
        };
        let wasm = match exec.and_then(|e| e.get("code")) {
            Some(Value::String(code)) => decode_module(code, ctl.opts.max_module_bytes)?,
            Some(_) => return Err(OwError::malformed("exec.code must be a string")),
            None if exec.is_some() || !matches!(current, Some(Action::Wasm(..))) => {
                return Err(OwError::bad(
                    "exec.code is required: the .wasm module (a wasm32-wasip1 command) in base64",
                ));
            }
            None => {
                ctl.exec
                    .module(&ns, &p.name, None)
                    .await?
                    .ok_or_else(OwError::not_found)?
                    .1
            }
        };
        let ow = Ow {
            kind,
            parameters,
            annotations,
            limits,
            version,
            publish,
        };
        let config = entities::config(&ow.limits, &ow.annotations)?;
        ctl.exec
            .deploy_from(
                &ns,
                &p.name,
                wasm.into(),
                config,
                Source {
                    oci: None,
                    meta: Some(json!({ "openwhisk": ow.doc() })),
                },
            )
            .await?;
    }
    let a = ctl
        .resolve(&ns, &p.name)
        .await?
        .ok_or_else(OwError::not_found)?;
    Ok(ok_json(StatusCode::OK, action_json(&ns, &p.name, &a, None)))
}

/// A module from `exec.code`: base64 of a `.wasm` (OpenWhisk's binary
/// actions); a zip (what `wsk` sends for other binary files) is refused
/// with a clear message.
fn decode_module(code: &str, max: usize) -> Result<Vec<u8>, OwError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(code.trim())
        .map_err(|e| OwError::bad(format!("exec.code is not base64: {e}")))?;
    if bytes.len() > max {
        return Err(OwError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "exec.code larger than allowed: {} > {max} bytes.",
                bytes.len()
            ),
        ));
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(OwError::bad(
            "exec.code is a zip archive: a Wasm action is one .wasm module, sent as it is",
        ));
    }
    Ok(bytes)
}

/// Check a sequence's components (`/ns/name`, `_` the caller's): at least
/// one, at most [`MAX_SEQUENCE`], each an existing action the caller may
/// invoke, and none the sequence itself.
async fn sequence_components(
    ctl: &Controller,
    who: &Subject,
    ns: &str,
    name: &str,
    v: &Value,
) -> Result<Vec<String>, OwError> {
    let Some(list) = v.as_array() else {
        return Err(OwError::malformed(
            "exec.components must be an array of action names",
        ));
    };
    if list.is_empty() {
        return Err(OwError::bad("No component specified for the sequence."));
    }
    if list.len() > MAX_SEQUENCE {
        return Err(OwError::bad("Too many actions in the sequence."));
    }
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let s = c.as_str().ok_or_else(|| {
            OwError::malformed("exec.components must be an array of action names")
        })?;
        let (cns, cname) = entities::fqn(s, ns)?;
        let cns = who.scope(&cns)?;
        if cns == ns && cname == name {
            return Err(OwError::bad("Sequence may not refer to itself."));
        }
        if ctl.resolve(&cns, &cname).await?.is_none() {
            return Err(OwError::bad("Sequence component does not exist."));
        }
        out.push(format!("/{cns}/{cname}"));
    }
    Ok(out)
}
