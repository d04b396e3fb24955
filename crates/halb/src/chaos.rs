//! Injected faults (`/api/v1/faults`) become alerts as they start and end,
//! through whichever alerter the running config has.

use std::sync::Arc;

use arc_swap::ArcSwap;
use halb_alerts::{Alert, Alerter};
use halb_chaos::{FaultEvent, Faults};
use tokio::sync::broadcast::error::RecvError;

/// Alert every fault start and end until the registry goes away.
pub fn spawn_alerts(faults: &Arc<Faults>, alerter: Arc<ArcSwap<Alerter>>) {
    let mut events = faults.subscribe();
    tokio::spawn(async move {
        loop {
            let alert = match events.recv().await {
                Ok(FaultEvent::Started(fault)) => Alert::FaultStarted {
                    id: fault.id.clone(),
                    pool: fault.pool.clone(),
                    backend: fault.backend,
                    kind: fault.kind.name().to_owned(),
                    value: match fault.kind.value() {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(text) => Some(text),
                        other => Some(other.to_string()),
                    },
                    percent: fault.percent.to_string(),
                    duration: format!("{:?}", fault.duration),
                },
                Ok(FaultEvent::Ended(fault, reason)) => Alert::FaultEnded {
                    id: fault.id.clone(),
                    pool: fault.pool.clone(),
                    kind: fault.kind.name().to_owned(),
                    reason: reason.as_str().to_owned(),
                    applied: fault.applied(),
                },
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "fault alerts fell behind; some were not sent");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            alerter.load().send(alert);
        }
    });
}
