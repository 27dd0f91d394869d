//! Sequences: the output of one action is the input of the next, handed
//! over in memory. Each component is an activation of its own (its `cause`
//! the sequence's id); the sequence's own record carries the last
//! component's response, the components' ids as its `logs`, and
//! OpenWhisk's `topmost`/`causedBy`/`kind: sequence` annotations. The
//! first component that does not succeed ends the sequence with its
//! response.

use super::Controller;
use super::actions::{MAX_SEQUENCE, Ow};
use super::activations::response_of;
use super::entities::fqn;
use super::invoke::Run;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;
use wisp_core::{Activation, ActivationStatus};

/// Nested sequences deeper than this are refused at run time (creation
/// refuses cycles, but a later update could make one).
const MAX_DEPTH: u32 = 8;

impl Controller {
    pub(crate) async fn run_sequence(
        self: &Arc<Self>,
        run: &Run,
        ow: &Ow,
        components: &[String],
    ) -> Result<Activation, super::OwError> {
        let t0 = Instant::now();
        let start_ms = chrono::Utc::now().timestamp_millis();
        let mut input = run.params.clone();
        let mut ids: Vec<String> = Vec::new();
        let mut response = json!({"status": "success", "statusCode": 0, "success": true, "result": Value::Object(input.clone())});
        let fail = |msg: &str| json!({"status": "application error", "statusCode": 1, "success": false, "result": {"error": msg}});
        if run.depth > MAX_DEPTH || components.len() > MAX_SEQUENCE {
            response = fail("Too many actions in the sequence.");
        } else {
            for c in components {
                let Ok((ns, name)) = fqn(c, &run.ns) else {
                    response = fail("Sequence component does not exist.");
                    break;
                };
                let step = Run {
                    ns,
                    name,
                    params: input.clone(),
                    id: wisp_executor::new_activation_id(),
                    cause: Some(run.id.clone()),
                    subject: run.subject.clone(),
                    queued_ms: 0,
                    depth: run.depth + 1,
                };
                match self.run(step).await {
                    Ok(rec) => {
                        ids.push(rec.id.clone());
                        response = response_of(&rec);
                        self.exec.record(rec);
                    }
                    Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {
                        response = fail("Sequence component does not exist.");
                    }
                    Err(e) => {
                        response = json!({"status": "whisk internal error", "statusCode": 3, "success": false,
                            "result": {"error": format!("Sequence failed. ({})", e.error)}});
                    }
                }
                if response["statusCode"] != 0 {
                    break;
                }
                input = response["result"].as_object().cloned().unwrap_or_default();
            }
        }
        let code = response["statusCode"].as_u64().unwrap_or(3);
        let mut annotations = vec![
            json!({"key": "topmost", "value": run.depth == 0}),
            json!({"key": "path", "value": format!("{}/{}", run.ns, run.name)}),
            json!({"key": "kind", "value": "sequence"}),
            json!({"key": "limits", "value": ow.limits.json()}),
        ];
        if run.depth > 0 {
            annotations.push(json!({"key": "causedBy", "value": "sequence"}));
        }
        let mut m = json!({
            "status": response["status"],
            "statusCode": code,
            "annotations": annotations,
            "version": ow.version,
            "subject": run.subject,
            "kind": "sequence",
            "logs": ids,
        });
        if let Some(c) = &run.cause {
            m["cause"] = c.clone().into();
        }
        Ok(Activation {
            id: run.id.clone(),
            namespace: run.ns.clone(),
            function: run.name.clone(),
            version: 0,
            start_ms,
            wait_us: run.queued_ms * 1000,
            init_us: 0,
            run_us: t0.elapsed().as_micros() as u64,
            status: if code <= 1 {
                ActivationStatus::Success
            } else {
                ActivationStatus::Error
            },
            http_status: if code == 0 { 200 } else { 502 },
            cold: false,
            bytes_in: 0,
            bytes_out: 0,
            error: (code != 0).then(|| response["result"]["error"].to_string()),
            log: None,
            result: Some(response["result"].clone()),
            meta: Some(json!({ "openwhisk": m })),
        })
    }
}
