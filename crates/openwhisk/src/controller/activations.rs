//! Activations in OpenWhisk's shape: list (`name`, `limit`, `skip`,
//! `since`, `upto`, `docs`), get, `/logs`, `/result`. They are Wisp's
//! activation records: an action's carry its result and OpenWhisk's fields
//! (`meta.openwhisk`); any other (a function invoked on `/fn`) is shown
//! with what Wisp knows of it.

use super::actions::{ListQuery, page};
use super::{Controller, NsOnly, OwError, Subject, ok_json};
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use wisp_core::{Activation, ActivationStatus};

fn ow(a: &Activation) -> Option<&Value> {
    a.meta.as_ref().and_then(|m| m.get("openwhisk"))
}

/// `response`: status, statusCode, success, result.
pub(crate) fn response_of(a: &Activation) -> Value {
    let (status, code) = match ow(a) {
        Some(m) => (
            m["status"]
                .as_str()
                .unwrap_or("whisk internal error")
                .to_string(),
            m["statusCode"].as_u64().unwrap_or(3),
        ),
        None => match a.status {
            ActivationStatus::Success if a.http_status < 400 => ("success".into(), 0),
            ActivationStatus::Success => ("application error".into(), 1),
            ActivationStatus::Error | ActivationStatus::Timeout => {
                ("action developer error".into(), 2)
            }
            ActivationStatus::Rejected | ActivationStatus::Cancelled => {
                ("whisk internal error".into(), 3)
            }
        },
    };
    let result = a.result.clone().unwrap_or_else(|| match &a.error {
        Some(e) => json!({ "error": e }),
        None => json!({}),
    });
    json!({ "status": status, "statusCode": code, "success": code == 0, "result": result })
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// When the activation started running, ended, and how long it took, ms.
fn times(a: &Activation) -> (i64, i64, i64) {
    let start = a.start_ms + (a.wait_us / 1000) as i64;
    let duration = ((a.init_us + a.run_us) / 1000) as i64;
    (start, start + duration, duration)
}

/// `logs`: the component ids of a sequence or the rules' answers of a
/// trigger, else the action's stderr as OpenWhisk formats log lines.
fn logs_of(a: &Activation) -> Vec<Value> {
    if let Some(l) = ow(a).and_then(|m| m.get("logs")).and_then(Value::as_array) {
        return l.clone();
    }
    let (_, end, _) = times(a);
    let ts = iso(end);
    a.log
        .as_deref()
        .unwrap_or("")
        .lines()
        .map(|l| Value::String(format!("{ts} stderr: {l}")))
        .collect()
}

fn annotations_of(a: &Activation) -> Value {
    ow(a)
        .and_then(|m| m.get("annotations"))
        .cloned()
        .unwrap_or_else(|| {
            json!([
                {"key": "path", "value": format!("{}/{}", a.namespace, a.function)},
                {"key": "waitTime", "value": a.wait_us / 1000},
                {"key": "kind", "value": "wasm:0.1"},
            ])
        })
}

/// An activation record as OpenWhisk shows it: whole (`full`), or the
/// summary of a listing.
pub(crate) fn activation_json(a: &Activation, full: bool) -> Value {
    let (start, end, duration) = times(a);
    let m = ow(a);
    let mut v = json!({
        "namespace": a.namespace,
        "name": a.function,
        "version": m.and_then(|m| m["version"].as_str()).map(str::to_string)
            .unwrap_or_else(|| format!("0.0.{}", a.version)),
        "subject": m.and_then(|m| m["subject"].as_str()).unwrap_or(&a.namespace),
        "activationId": a.id,
        "start": start,
        "end": end,
        "duration": duration,
        "publish": false,
        "annotations": annotations_of(a),
    });
    if let Some(c) = m.and_then(|m| m.get("cause")) {
        v["cause"] = c.clone();
    }
    let resp = response_of(a);
    if full {
        v["response"] = resp;
        v["logs"] = Value::Array(logs_of(a));
    } else {
        v["statusCode"] = resp["statusCode"].clone();
    }
    v
}

#[derive(Deserialize)]
pub(crate) struct NsId {
    ns: String,
    id: String,
}

#[derive(Deserialize, Default)]
pub(crate) struct ActivationsQuery {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    skip: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    upto: Option<String>,
    #[serde(default)]
    docs: Option<String>,
}

fn epoch(v: &Option<String>) -> Result<Option<i64>, OwError> {
    v.as_deref()
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                OwError::bad(format!(
                    "Parameter is not a valid value for epoch seconds: {s}"
                ))
            })
        })
        .transpose()
}

/// `GET /namespaces/{ns}/activations`: newest first.
pub(crate) async fn list(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsOnly>,
    Query(q): Query<ActivationsQuery>,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    let (limit, skip) = page(
        &ListQuery {
            limit: q.limit.clone(),
            skip: q.skip.clone(),
        },
        "activations",
        30,
        200,
    )?;
    // `name` may be `package/action`; a Wisp action has no package.
    let name = q
        .name
        .as_deref()
        .map(|n| n.rsplit('/').next().unwrap_or(n).to_string());
    let docs = q.docs.as_deref() == Some("true");
    ctl.exec.flush().await;
    let acts = ctl
        .exec
        .activations(
            Some(ns),
            name,
            epoch(&q.since)?,
            epoch(&q.upto)?,
            limit,
            skip,
        )
        .await?;
    let mut out = Vec::with_capacity(acts.len());
    for a in acts {
        if docs {
            // A listing leaves logs and results out; docs=true wants them.
            if let Some(full) = ctl.exec.activation(a.id.clone()).await? {
                out.push(activation_json(&full, true));
            }
        } else {
            out.push(activation_json(&a, false));
        }
    }
    Ok(ok_json(StatusCode::OK, Value::Array(out)))
}

async fn find(ctl: &Controller, who: &Subject, p: &NsId) -> Result<Activation, OwError> {
    let ns = who.scope(&p.ns)?;
    ctl.exec.flush().await;
    match ctl.exec.activation(p.id.clone()).await? {
        Some(a) if a.namespace == ns => Ok(a),
        _ => Err(OwError::not_found()),
    }
}

/// `GET /namespaces/{ns}/activations/{id}`.
pub(crate) async fn get(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsId>,
) -> Result<Response, OwError> {
    let a = find(&ctl, &who, &p).await?;
    Ok(ok_json(StatusCode::OK, activation_json(&a, true)))
}

/// `GET /namespaces/{ns}/activations/{id}/logs`: `{"logs": [...]}`.
pub(crate) async fn logs(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsId>,
) -> Result<Response, OwError> {
    let a = find(&ctl, &who, &p).await?;
    Ok(ok_json(StatusCode::OK, json!({ "logs": logs_of(&a) })))
}

/// `GET /namespaces/{ns}/activations/{id}/result`: the response.
pub(crate) async fn result(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsId>,
) -> Result<Response, OwError> {
    let a = find(&ctl, &who, &p).await?;
    Ok(ok_json(StatusCode::OK, response_of(&a)))
}
