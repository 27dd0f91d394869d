//! The alarm feed: `/whisk.system/alarms/alarm`, built in.
//!
//! OpenWhisk clients attach a feed to a trigger by invoking the feed
//! action with a lifecycle event (`wsk trigger create T --feed
//! /whisk.system/alarms/alarm -p cron '*/10 * * * * *'`, or the npm
//! client's `feeds.create`): `POST
//! /api/v1/namespaces/whisk.system/actions/alarms/alarm?blocking=true`
//! `{"lifecycleEvent": "CREATE"|"READ"|"UPDATE"|"DELETE", "triggerName":
//! "/ns/T", "authKey", "cron", "trigger_payload", "startDate", "stopDate",
//! "maxTriggers"}`. Here that action is served by the controller itself
//! rather than by an alarms provider service: the alarm is a stored
//! document of the trigger's namespace, and one task fires every alarm on
//! its schedule (cron, five fields or six with seconds, UTC). The caller's
//! own key must own the trigger; `authKey` is not kept.

use super::activations::activation_json;
use super::invoke::with_id;
use super::{Controller, OwError, Subject, json_object, ok_json};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use wisp_core::{Activation, ActivationStatus};
use wisp_store::Put;

/// The alarm clock's wake-up call when alarms change.
#[derive(Default)]
pub(crate) struct Alarms {
    pub(crate) changed: Arc<Notify>,
}

#[derive(Deserialize)]
pub(crate) struct Feed {
    ns: String,
    package: String,
    name: String,
}

fn parse_cron(s: &str) -> Result<croner::Cron, OwError> {
    croner::Cron::from_str(s)
        .map_err(|e| OwError::bad(format!("cron pattern '{s}' is not valid: {e}")))
}

fn parse_date(v: Option<&Value>, what: &str) -> Result<Option<i64>, OwError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_i64()),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|d| Some(d.timestamp_millis()))
            .map_err(|e| OwError::bad(format!("{what} '{s}' is not a date (ISO 8601): {e}"))),
        Some(_) => Err(OwError::bad(format!("{what} must be a date"))),
    }
}

/// `POST /namespaces/whisk.system/actions/alarms/alarm`: the feed's
/// lifecycle events. Any other packaged action does not exist here.
pub(crate) async fn feed_action(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(f): Path<Feed>,
    super::Body(body): super::Body,
) -> Result<Response, OwError> {
    if (f.ns.as_str(), f.package.as_str(), f.name.as_str()) != ("whisk.system", "alarms", "alarm") {
        return Err(OwError::not_found());
    }
    let p = json_object(&body)?;
    let event = p
        .get("lifecycleEvent")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_uppercase();
    let trigger = p
        .get("triggerName")
        .and_then(Value::as_str)
        .ok_or_else(|| OwError::bad("triggerName is required"))?;
    let (tns, tname) = super::entities::fqn(trigger, who.namespace())?;
    let tns = who.scope(&tns)?;
    let result = match event.as_str() {
        "CREATE" | "UPDATE" => {
            if ctl.entity(&tns, "triggers", &tname).await?.is_none() {
                return Err(OwError::not_found());
            }
            let old = ctl.entity(&tns, "alarms", &tname).await?;
            if event == "CREATE" && old.is_some() {
                return Err(OwError::conflict());
            }
            let mut doc = old.map(|o| o.doc).unwrap_or_else(|| json!({"fired": 0}));
            for k in [
                "cron",
                "trigger_payload",
                "startDate",
                "stopDate",
                "maxTriggers",
            ] {
                if let Some(v) = p.get(k) {
                    doc[k] = v.clone();
                }
            }
            let cron = doc["cron"]
                .as_str()
                .ok_or_else(|| OwError::bad("cron is required"))?;
            parse_cron(cron)?;
            parse_date(doc.get("startDate"), "startDate")?;
            parse_date(doc.get("stopDate"), "stopDate")?;
            if !doc["trigger_payload"].is_null() && !doc["trigger_payload"].is_object() {
                return Err(OwError::bad("trigger_payload must be an object"));
            }
            ctl.put_entity(&tns, "alarms", &tname, doc, Put::Overwrite)
                .await?;
            ctl.alarms.changed.notify_one();
            json!({"status": "success", "triggerName": format!("/{tns}/{tname}")})
        }
        "READ" => {
            let a = ctl
                .entity(&tns, "alarms", &tname)
                .await?
                .ok_or_else(OwError::not_found)?;
            json!({"config": a.doc, "status": {"active": true}})
        }
        "DELETE" => {
            if !ctl.delete_entity(&tns, "alarms", &tname).await? {
                return Err(OwError::not_found());
            }
            ctl.alarms.changed.notify_one();
            json!({"status": "success"})
        }
        other => {
            return Err(OwError::bad(format!(
                "lifecycleEvent '{other}' is not one of CREATE, READ, UPDATE, DELETE"
            )));
        }
    };
    // The feed action's activation, in the caller's namespace.
    let rec = Activation {
        id: wisp_executor::new_activation_id(),
        namespace: who.namespace().to_string(),
        function: "alarm".into(),
        version: 0,
        start_ms: Utc::now().timestamp_millis(),
        wait_us: 0,
        init_us: 0,
        run_us: 0,
        status: ActivationStatus::Success,
        http_status: 200,
        cold: false,
        bytes_in: body.len() as u64,
        bytes_out: 0,
        error: None,
        log: None,
        result: Some(result),
        meta: Some(json!({"openwhisk": {
            "status": "success",
            "statusCode": 0,
            "annotations": [{"key": "path", "value": "whisk.system/alarms/alarm"}, {"key": "kind", "value": "builtin"}],
            "version": "0.0.1",
            "subject": who.namespace(),
        }})),
    };
    ctl.exec.record(rec.clone());
    Ok(with_id(
        ok_json(StatusCode::OK, activation_json(&rec, true)),
        &rec.id,
    ))
}

/// One alarm's next firing.
struct Next {
    ns: String,
    trigger: String,
    at: DateTime<Utc>,
    payload: Map<String, Value>,
}

/// When each alarm fires next after `now` (those past their stop date or
/// their count are left out).
fn schedule(alarms: &[wisp_store::Entity], now: DateTime<Utc>) -> Vec<Next> {
    let mut out = Vec::new();
    for a in alarms {
        let d = &a.doc;
        let Some(cron) = d["cron"].as_str().and_then(|c| parse_cron(c).ok()) else {
            continue;
        };
        if let Some(max) = d["maxTriggers"].as_i64()
            && max >= 0
            && d["fired"].as_i64().unwrap_or(0) >= max
        {
            continue;
        }
        let start = parse_date(d.get("startDate"), "").ok().flatten();
        let from = match start.and_then(DateTime::from_timestamp_millis) {
            Some(s) if s > now => s,
            _ => now,
        };
        let Ok(at) = cron.find_next_occurrence(&from, false) else {
            continue;
        };
        let stop = parse_date(d.get("stopDate"), "").ok().flatten();
        if stop.is_some_and(|s| at.timestamp_millis() > s) {
            continue;
        }
        out.push(Next {
            ns: a.namespace.clone(),
            trigger: a.name.clone(),
            at,
            payload: d["trigger_payload"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
        });
    }
    out
}

/// The alarm clock: sleep until the next alarm (or a change), fire what
/// is due, repeat. An alarm missed while the server was down is not fired
/// late; its schedule resumes.
pub(crate) async fn run(ctl: Weak<Controller>) {
    loop {
        let Some(c) = ctl.upgrade() else { return };
        let notify = c.alarms.changed.clone();
        let changed = notify.notified();
        let alarms = match c.entities(None, "alarms").await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e.error, "reading alarms failed");
                Vec::new()
            }
        };
        let now = Utc::now();
        let plan = schedule(&alarms, now);
        let wake = plan.iter().map(|n| n.at).min();
        drop(c);
        let sleep = wake
            .map(|w| (w - now).to_std().unwrap_or_default())
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        tokio::select! {
            _ = changed => continue,
            _ = tokio::time::sleep(sleep) => {}
        }
        let Some(c) = ctl.upgrade() else { return };
        let now = Utc::now();
        for n in plan.into_iter().filter(|n| n.at <= now) {
            match c.fire(&n.ns, &n.trigger, n.payload.clone(), &n.ns).await {
                Ok(id) => {
                    tracing::debug!(namespace = %n.ns, trigger = %n.trigger, ?id, "alarm fired")
                }
                Err(e) => {
                    tracing::warn!(namespace = %n.ns, trigger = %n.trigger, error = %e.error, "alarm could not fire its trigger")
                }
            }
            if let Ok(Some(mut a)) = c.entity(&n.ns, "alarms", &n.trigger).await {
                a.doc["fired"] = (a.doc["fired"].as_i64().unwrap_or(0) + 1).into();
                let _ = c
                    .put_entity(&n.ns, "alarms", &n.trigger, a.doc, Put::Overwrite)
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(doc: Value) -> wisp_store::Entity {
        wisp_store::Entity {
            namespace: "a".into(),
            name: "t".into(),
            doc,
            updated_ms: 0,
        }
    }

    #[test]
    fn alarms_fire_on_their_schedule_within_their_bounds() {
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:00:00.500Z")
            .unwrap()
            .with_timezone(&Utc);
        let every_2s =
            alarm(json!({"cron": "*/2 * * * * *", "fired": 0, "trigger_payload": {"k": 1}}));
        let s = schedule(std::slice::from_ref(&every_2s), now);
        assert_eq!(s[0].at.timestamp_millis() - now.timestamp_millis(), 1500);
        assert_eq!(s[0].payload["k"], 1);
        // Five fields: minutes.
        let hourly = alarm(json!({"cron": "0 * * * *"}));
        assert_eq!(
            schedule(&[hourly], now)[0].at.to_rfc3339(),
            "2030-01-01T01:00:00+00:00"
        );
        let spent = alarm(json!({"cron": "* * * * * *", "fired": 3, "maxTriggers": 3}));
        assert!(schedule(&[spent], now).is_empty());
        let stopped = alarm(json!({"cron": "* * * * * *", "stopDate": "2029-12-31T00:00:00Z"}));
        assert!(schedule(&[stopped], now).is_empty());
        let later = alarm(json!({"cron": "* * * * * *", "startDate": "2030-01-02T00:00:00Z"}));
        assert_eq!(
            schedule(&[later], now)[0].at.to_rfc3339(),
            "2030-01-02T00:00:01+00:00"
        );
        assert!(parse_cron("not a cron").is_err());
    }
}
