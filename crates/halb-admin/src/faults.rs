//! `/api/v1/faults`: inject faults into the data path (`[chaos] allow`
//! only), list them, end them early. The token is checked first (401),
//! then `[chaos] allow` (403), then the body (400 naming the field).

use std::sync::Arc;

use bytes::Bytes;
use halb_chaos::{EndReason, FaultError, FaultRequest, Faults, PoolTarget};
use halb_config::Protocol;
use halb_proxy::Topology;
use http::{Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::Response;

use crate::{error, json, MAX_BODY};

/// Serve `method` on `/api/v1/faults` (`id` empty) or `/api/v1/faults/{id}`.
pub(crate) async fn serve(
    faults: Option<&Arc<Faults>>,
    topology: &Topology,
    method: &Method,
    id: &str,
    body: Incoming,
) -> Response<Full<Bytes>> {
    let Some(faults) = faults.filter(|faults| faults.allowed()) else {
        return error(
            StatusCode::FORBIDDEN,
            "fault injection is off on this node: set [chaos] allow = true in its config",
        );
    };
    match (method, id) {
        (&Method::GET, "") => json(StatusCode::OK, &list(faults)),
        (&Method::POST, "") => add(faults, topology, body).await,
        (_, "") => error(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST"),
        (&Method::DELETE, id) => match faults.end(id, EndReason::Deleted) {
            Some(_) => {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::NO_CONTENT;
                response
            }
            None => error(
                StatusCode::NOT_FOUND,
                &format!("no active fault with id {id:?}"),
            ),
        },
        (_, _) => error(StatusCode::METHOD_NOT_ALLOWED, "use DELETE"),
    }
}

/// `{"faults": [...]}`, also the status API's `faults`.
pub(crate) fn list(faults: &Faults) -> serde_json::Value {
    let faults: Vec<_> = faults.list().iter().map(|f| f.to_json()).collect();
    serde_json::json!({ "faults": faults })
}

async fn add(faults: &Faults, topology: &Topology, body: Incoming) -> Response<Full<Bytes>> {
    let bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body: {e}"),
            )
        }
    };
    let names: Vec<String> = topology
        .pools
        .iter()
        .map(|p| p.config.name.clone())
        .collect();
    let spec = FaultRequest::from_json(&bytes)
        .and_then(|request| request.validate(|pool| target(topology, pool), &names));
    match spec.and_then(|spec| faults.add(spec)) {
        Ok(fault) => json(StatusCode::CREATED, &fault.to_json()),
        Err(FaultError::Disallowed) => {
            error(StatusCode::FORBIDDEN, &FaultError::Disallowed.to_string())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// A pool's backends, and whether an HTTP listener sends it requests.
fn target(topology: &Topology, pool: &str) -> Option<PoolTarget> {
    let state = topology.pools.iter().find(|p| p.config.name == pool)?;
    let http = topology.listeners.iter().any(|listener| {
        listener.protocol == Protocol::Http
            && listener
                .routes
                .load()
                .all()
                .any(|route| &*route.pool_name == pool)
    });
    Some(PoolTarget {
        http,
        backends: state.backends.iter().map(|b| b.address).collect(),
    })
}
