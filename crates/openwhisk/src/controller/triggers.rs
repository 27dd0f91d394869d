//! Triggers and rules. A trigger is a named event with default parameters;
//! a rule connects a trigger to an action and is `active` or `inactive`.
//! Firing a trigger (`POST …/triggers/{name}`, or its alarm) records a
//! trigger activation and queues one activation of every action an active
//! rule names, with the trigger's parameters merged under the fire's, each
//! caused by the trigger activation. Queued means durable: they run even
//! if the server stops right after the fire was answered.

use super::actions::{ListQuery, flag, ns_exists, page, store_error};
use super::entities::{self, fqn, key_values, kv_map};
use super::invoke::{Run, accepted};
use super::{Controller, NsName, NsOnly, OwError, PutQuery, Subject, json_object, ok_json};
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use wisp_core::{Activation, ActivationStatus};
use wisp_store::{Entity, Put};

fn internal(e: impl std::fmt::Display) -> OwError {
    OwError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl Controller {
    pub(crate) async fn entity(
        &self,
        ns: &str,
        coll: &'static str,
        name: &str,
    ) -> Result<Option<Entity>, OwError> {
        let store = self.exec.store().clone();
        let (n, a) = (ns.to_string(), name.to_string());
        tokio::task::spawn_blocking(move || store.get_entity(&n, coll, &a))
            .await
            .map_err(internal)?
            .map_err(store_error)
    }

    pub(crate) async fn entities(
        &self,
        ns: Option<&str>,
        coll: &'static str,
    ) -> Result<Vec<Entity>, OwError> {
        let store = self.exec.store().clone();
        let n = ns.map(str::to_string);
        tokio::task::spawn_blocking(move || store.list_entities(n.as_deref(), coll, u32::MAX, 0))
            .await
            .map_err(internal)?
            .map_err(store_error)
    }

    pub(crate) async fn put_entity(
        &self,
        ns: &str,
        coll: &'static str,
        name: &str,
        doc: Value,
        mode: Put,
    ) -> Result<(), OwError> {
        let store = self.exec.store().clone();
        let (n, a) = (ns.to_string(), name.to_string());
        tokio::task::spawn_blocking(move || store.put_entity(&n, coll, &a, &doc, mode))
            .await
            .map_err(internal)?
            .map_err(store_error)?;
        Ok(())
    }

    pub(crate) async fn delete_entity(
        &self,
        ns: &str,
        coll: &'static str,
        name: &str,
    ) -> Result<bool, OwError> {
        let store = self.exec.store().clone();
        let (n, a) = (ns.to_string(), name.to_string());
        tokio::task::spawn_blocking(move || store.delete_entity(&n, coll, &a))
            .await
            .map_err(internal)?
            .map_err(store_error)
    }

    /// Fire `ns/trigger` with `payload`: queue every active rule's action.
    /// `None` when no rule is active (nothing is recorded, as in OpenWhisk).
    pub(crate) async fn fire(
        &self,
        ns: &str,
        trigger: &str,
        payload: Map<String, Value>,
        subject: &str,
    ) -> Result<Option<String>, OwError> {
        let t = self
            .entity(ns, "triggers", trigger)
            .await?
            .ok_or_else(OwError::not_found)?;
        let mut params = kv_map(
            t.doc["parameters"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        params.extend(payload);
        let path = format!("/{ns}/{trigger}");
        let rules: Vec<Entity> = self
            .entities(Some(ns), "rules")
            .await?
            .into_iter()
            .filter(|r| r.doc["trigger"] == path.as_str() && r.doc["status"] == "active")
            .collect();
        if rules.is_empty() {
            return Ok(None);
        }
        let id = wisp_executor::new_activation_id();
        let start_ms = chrono::Utc::now().timestamp_millis();
        let mut logs = Vec::with_capacity(rules.len());
        for r in &rules {
            let action = r.doc["action"].as_str().unwrap_or("");
            let rule_path = format!("{ns}/{}", r.name);
            let (ans, aname) = match fqn(action, ns) {
                Ok(x) => x,
                Err(e) => {
                    logs.push(json!({"statusCode": 1, "success": false, "rule": rule_path, "action": action, "error": e.error}).to_string());
                    continue;
                }
            };
            let run = Run {
                ns: ans.clone(),
                name: aname.clone(),
                params: params.clone(),
                id: wisp_executor::new_activation_id(),
                cause: Some(id.clone()),
                subject: subject.to_string(),
                queued_ms: 0,
                depth: 0,
            };
            let act_id = run.id.clone();
            let line = match self.enqueue(run).await {
                Ok(()) => json!({"statusCode": 0, "success": true, "activationId": act_id,
                                 "rule": rule_path, "action": format!("{ans}/{aname}")}),
                Err(e) => json!({"statusCode": 1, "success": false, "rule": rule_path,
                                 "action": format!("{ans}/{aname}"), "error": e.error}),
            };
            logs.push(line.to_string());
        }
        self.exec.record(Activation {
            id: id.clone(),
            namespace: ns.to_string(),
            function: trigger.to_string(),
            version: 0,
            start_ms,
            wait_us: 0,
            init_us: 0,
            run_us: 0,
            status: ActivationStatus::Success,
            http_status: 202,
            cold: false,
            bytes_in: 0,
            bytes_out: 0,
            error: None,
            log: None,
            parent: None,
            step: None,
            result: Some(Value::Object(params)),
            meta: Some(json!({"openwhisk": {
                "status": "success",
                "statusCode": 0,
                "annotations": [{"key": "path", "value": format!("{ns}/{trigger}")}, {"key": "kind", "value": "trigger"}],
                "version": t.doc["version"],
                "subject": subject,
                "kind": "trigger",
                "logs": logs,
            }})),
        });
        Ok(Some(id))
    }
}

async fn trigger_json(ctl: &Controller, ns: &str, t: &Entity) -> Result<Value, OwError> {
    let path = format!("/{ns}/{}", t.name);
    let mut rules = Map::new();
    for r in ctl.entities(Some(ns), "rules").await? {
        if r.doc["trigger"] == path.as_str() {
            let (ans, aname) = fqn(r.doc["action"].as_str().unwrap_or(""), ns).unwrap_or_default();
            rules.insert(
                format!("{ns}/{}", r.name),
                json!({"action": {"name": aname, "path": ans}, "status": r.doc["status"]}),
            );
        }
    }
    Ok(json!({
        "namespace": ns,
        "name": t.name,
        "version": t.doc["version"],
        "publish": t.doc["publish"],
        "parameters": t.doc["parameters"],
        "annotations": t.doc["annotations"],
        "limits": {},
        "rules": rules,
        "updated": t.updated_ms,
    }))
}

fn rule_json(ns: &str, r: &Entity) -> Value {
    let side = |k: &str| {
        let (n, name) = fqn(r.doc[k].as_str().unwrap_or(""), ns).unwrap_or_default();
        json!({"name": name, "path": n})
    };
    json!({
        "namespace": ns,
        "name": r.name,
        "version": r.doc["version"],
        "publish": r.doc["publish"],
        "annotations": r.doc["annotations"],
        "status": r.doc["status"],
        "trigger": side("trigger"),
        "action": side("action"),
        "updated": r.updated_ms,
    })
}

/// The common fields of a PUT, merged over the current document.
fn common(body: &Map<String, Value>, old: Option<&Value>) -> Result<Map<String, Value>, OwError> {
    let mut doc = Map::new();
    let annotations = match body.get("annotations") {
        Some(a) => key_values(Some(a), "annotations")?,
        None => old
            .and_then(|o| o["annotations"].as_array().cloned())
            .unwrap_or_default(),
    };
    doc.insert("annotations".into(), annotations.into());
    let version = match (body.get("version"), old) {
        (Some(Value::String(v)), _) => v.clone(),
        (Some(_), _) => return Err(OwError::malformed("version must be a string like 0.0.1")),
        (None, Some(o)) => entities::up_patch(o["version"].as_str().unwrap_or("0.0.0")),
        (None, None) => "0.0.1".into(),
    };
    doc.insert("version".into(), version.into());
    let publish = body
        .get("publish")
        .and_then(Value::as_bool)
        .or_else(|| old.and_then(|o| o["publish"].as_bool()))
        .unwrap_or(false);
    doc.insert("publish".into(), publish.into());
    Ok(doc)
}

/// `GET /namespaces/{ns}/triggers`.
pub(crate) async fn list_triggers(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsOnly>,
    Query(q): Query<ListQuery>,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    ns_exists(&ctl, &ns)?;
    let (limit, skip) = page(&q, "triggers", 30, 200)?;
    let mut out = Vec::new();
    for t in ctl
        .entities(Some(&ns), "triggers")
        .await?
        .iter()
        .skip(skip as usize)
        .take(limit as usize)
    {
        out.push(trigger_json(&ctl, &ns, t).await?);
    }
    Ok(ok_json(StatusCode::OK, Value::Array(out)))
}

/// `GET /namespaces/{ns}/triggers/{name}`.
pub(crate) async fn get_trigger(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsName>,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    let t = ctl
        .entity(&ns, "triggers", &p.name)
        .await?
        .ok_or_else(OwError::not_found)?;
    Ok(ok_json(StatusCode::OK, trigger_json(&ctl, &ns, &t).await?))
}

/// What a `PUT` of a trigger or a rule starts from: the caller's namespace,
/// the body, the entity it replaces (409 unless `overwrite=true`), the
/// fields every entity has merged over the old ones, and the store mode.
struct Upsert {
    ns: String,
    body: Map<String, Value>,
    old: Option<Entity>,
    doc: Map<String, Value>,
    mode: Put,
}

impl Upsert {
    async fn begin(
        ctl: &Controller,
        who: &Subject,
        p: &NsName,
        q: &PutQuery,
        body: &axum::body::Bytes,
        coll: &'static str,
    ) -> Result<Upsert, OwError> {
        let ns = who.scope(&p.ns)?;
        ns_exists(ctl, &ns)?;
        entities::check_name(&p.name)?;
        let body = json_object(body)?;
        let old = ctl.entity(&ns, coll, &p.name).await?;
        let overwrite = flag(&q.overwrite);
        if old.is_some() && !overwrite {
            return Err(OwError::conflict());
        }
        let doc = common(&body, old.as_ref().map(|o| &o.doc))?;
        let mode = if overwrite {
            Put::Overwrite
        } else {
            Put::Create
        };
        Ok(Upsert {
            ns,
            body,
            old,
            doc,
            mode,
        })
    }
}

impl Controller {
    /// Store `doc` as `coll/name` and read back what was stored.
    async fn save(
        &self,
        ns: &str,
        coll: &'static str,
        name: &str,
        doc: Map<String, Value>,
        mode: Put,
    ) -> Result<Entity, OwError> {
        self.put_entity(ns, coll, name, Value::Object(doc), mode)
            .await?;
        self.entity(ns, coll, name)
            .await?
            .ok_or_else(OwError::not_found)
    }
}

/// `PUT /namespaces/{ns}/triggers/{name}[?overwrite=true]`.
pub(crate) async fn put_trigger(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsName>,
    Query(q): Query<PutQuery>,
    super::Body(body): super::Body,
) -> Result<Response, OwError> {
    let Upsert {
        ns,
        body,
        old,
        mut doc,
        mode,
    } = Upsert::begin(&ctl, &who, &p, &q, &body, "triggers").await?;
    let parameters = match body.get("parameters") {
        Some(v) => key_values(Some(v), "parameters")?,
        None => old
            .as_ref()
            .and_then(|o| o.doc["parameters"].as_array().cloned())
            .unwrap_or_default(),
    };
    doc.insert("parameters".into(), parameters.into());
    let t = ctl.save(&ns, "triggers", &p.name, doc, mode).await?;
    Ok(ok_json(StatusCode::OK, trigger_json(&ctl, &ns, &t).await?))
}

/// `DELETE /namespaces/{ns}/triggers/{name}`: its alarm goes too.
pub(crate) async fn delete_trigger(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsName>,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    let t = ctl
        .entity(&ns, "triggers", &p.name)
        .await?
        .ok_or_else(OwError::not_found)?;
    let shown = trigger_json(&ctl, &ns, &t).await?;
    ctl.delete_entity(&ns, "triggers", &p.name).await?;
    if ctl.delete_entity(&ns, "alarms", &p.name).await? {
        ctl.alarms.changed.notify_one();
    }
    Ok(ok_json(StatusCode::OK, shown))
}

/// `POST /namespaces/{ns}/triggers/{name}`: fire it. 202 with the trigger
/// activation's id, or 204 when no rule is active.
pub(crate) async fn fire(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsName>,
    super::Body(body): super::Body,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    let payload = json_object(&body)?;
    match ctl.fire(&ns, &p.name, payload, who.namespace()).await? {
        Some(id) => Ok(accepted(&id)),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `GET /namespaces/{ns}/rules`.
pub(crate) async fn list_rules(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsOnly>,
    Query(q): Query<ListQuery>,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    ns_exists(&ctl, &ns)?;
    let (limit, skip) = page(&q, "rules", 30, 200)?;
    let out: Vec<Value> = ctl
        .entities(Some(&ns), "rules")
        .await?
        .iter()
        .skip(skip as usize)
        .take(limit as usize)
        .map(|r| rule_json(&ns, r))
        .collect();
    Ok(ok_json(StatusCode::OK, Value::Array(out)))
}

/// `GET /namespaces/{ns}/rules/{name}`.
pub(crate) async fn get_rule(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsName>,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    let r = ctl
        .entity(&ns, "rules", &p.name)
        .await?
        .ok_or_else(OwError::not_found)?;
    Ok(ok_json(StatusCode::OK, rule_json(&ns, &r)))
}

/// `PUT /namespaces/{ns}/rules/{name}[?overwrite=true]` `{"trigger", "action"}`:
/// both must exist, in the caller's namespace. A new rule is active.
pub(crate) async fn put_rule(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsName>,
    Query(q): Query<PutQuery>,
    super::Body(body): super::Body,
) -> Result<Response, OwError> {
    let Upsert {
        ns,
        body,
        old,
        mut doc,
        mode,
    } = Upsert::begin(&ctl, &who, &p, &q, &body, "rules").await?;
    for (k, coll) in [("trigger", "triggers"), ("action", "actions")] {
        let given = match (body.get(k), &old) {
            (Some(Value::String(s)), _) => s.clone(),
            (Some(_), _) => return Err(OwError::malformed(format!("{k} must be a name"))),
            (None, Some(o)) => o.doc[k].as_str().unwrap_or("").to_string(),
            (None, None) => return Err(OwError::malformed(format!("{k} is required"))),
        };
        let (ens, ename) = fqn(&given, &ns)?;
        let ens = who.scope(&ens)?;
        let exists = if coll == "actions" {
            ctl.resolve(&ens, &ename).await?.is_some()
        } else {
            ctl.entity(&ens, coll, &ename).await?.is_some()
        };
        if !exists {
            return Err(OwError::not_found());
        }
        doc.insert(k.into(), format!("/{ens}/{ename}").into());
    }
    let status = old
        .as_ref()
        .and_then(|o| o.doc["status"].as_str().map(str::to_string))
        .unwrap_or_else(|| "active".into());
    doc.insert("status".into(), status.into());
    let r = ctl.save(&ns, "rules", &p.name, doc, mode).await?;
    Ok(ok_json(StatusCode::OK, rule_json(&ns, &r)))
}

/// `DELETE /namespaces/{ns}/rules/{name}`.
pub(crate) async fn delete_rule(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsName>,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    let r = ctl
        .entity(&ns, "rules", &p.name)
        .await?
        .ok_or_else(OwError::not_found)?;
    ctl.delete_entity(&ns, "rules", &p.name).await?;
    Ok(ok_json(StatusCode::OK, rule_json(&ns, &r)))
}

/// `POST /namespaces/{ns}/rules/{name}` `{"status": "active"|"inactive"}`.
pub(crate) async fn set_rule_status(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsName>,
    super::Body(body): super::Body,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    let body = json_object(&body)?;
    let status = match body.get("status").and_then(Value::as_str) {
        Some(s @ ("active" | "inactive")) => s.to_string(),
        _ => return Err(OwError::bad("status must be 'active' or 'inactive'")),
    };
    let mut r = ctl
        .entity(&ns, "rules", &p.name)
        .await?
        .ok_or_else(OwError::not_found)?;
    r.doc["status"] = status.into();
    ctl.put_entity(&ns, "rules", &p.name, r.doc.clone(), Put::Overwrite)
        .await?;
    Ok(ok_json(StatusCode::OK, rule_json(&ns, &r)))
}
