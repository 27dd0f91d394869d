//! The activation writer: batches records into SQLite off the hot path.

use crate::Executor;
use crate::activation::Msg;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::mpsc;
use wisp_store::Store;

/// Batches activation records into SQLite off the hot path.
pub(crate) async fn writer(
    exec: std::sync::Weak<Executor>,
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Msg>,
) {
    const BATCH: usize = 512;
    let mut since_prune = 0usize;
    let mut buf: Vec<Msg> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut buf, BATCH).await > 0 {
        // Under load, let a batch fill for a moment: one transaction per
        // ~25 ms instead of one per handful of records.
        if buf.len() < BATCH && !buf.iter().any(|m| matches!(m, Msg::Flush(_))) {
            tokio::time::sleep(Duration::from_millis(25)).await;
            while buf.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => buf.push(m),
                    Err(_) => break,
                }
            }
        }
        let mut batch = Vec::with_capacity(buf.len());
        let mut runs = Vec::new();
        let mut flushes = Vec::new();
        for m in buf.drain(..) {
            match m {
                Msg::Record(a) => batch.push(a),
                Msg::Run(r) => runs.push(r),
                Msg::Flush(tx) => flushes.push(tx),
            }
        }
        let n = batch.len();
        let retention = exec
            .upgrade()
            .map(|e| e.opts.activation_retention)
            .unwrap_or(u64::MAX);
        since_prune += n;
        let prune = since_prune >= 1000;
        if prune {
            since_prune = 0;
        }
        let s = store.clone();
        let res = tokio::task::spawn_blocking(move || {
            let written = if batch.is_empty() {
                0
            } else {
                s.insert_activations(&batch)?
            };
            if !runs.is_empty() {
                s.insert_workflow_runs(&runs)?;
            }
            if prune {
                s.prune_activations(retention)?;
                s.prune_workflow_runs(retention)?;
            }
            Ok::<_, wisp_store::Error>(written)
        })
        .await;
        match res {
            Ok(Ok(written)) => {
                if let Some(e) = exec.upgrade() {
                    e.metrics
                        .activations_written
                        .fetch_add(written as u64, Relaxed);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, dropped = n, "writing activation records failed")
            }
            Err(e) => tracing::warn!(error = %e, "activation writer task failed"),
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}
