//! After `101 Switching Protocols`: the client's and the backend's
//! connections joined, spliced when both are plain TCP, copied through
//! user space when either side speaks TLS.

use std::rc::Rc;
use std::time::Duration;

use super::{BackendUpgrade, ClientConnection};
use crate::transport::{BackendStream, Transport};

/// Join the client and backend connections after `101 Switching
/// Protocols`, until both sides have closed. Bytes either side sent after
/// its head go to the other side first; then the bytes are relayed as in
/// TCP mode.
/// `stall_limit`: how long either side may take no bytes of the early ones.
pub(super) async fn tunnel(
    connection: Rc<ClientConnection>,
    upgrade: BackendUpgrade,
    stall_limit: Duration,
) {
    let BackendUpgrade {
        stream: backend,
        early: from_backend,
        in_flight,
        descriptor: _descriptor,
    } = upgrade;
    let Ok(connection) = Rc::try_unwrap(connection) else {
        tracing::debug!("upgrade with a request body still pending; closing");
        return;
    };
    let from_client = connection.buf.into_inner();
    let client = connection.stream;
    let mut written = false;
    if !from_client.is_empty() {
        let mut parts = [from_client.freeze()];
        let wrote = backend.write_all(&mut parts, stall_limit, &mut written);
        if wrote.await.is_err() {
            return;
        }
    }
    if !from_backend.is_empty() {
        let mut parts = [from_backend.freeze()];
        if client
            .write_all(&mut parts, stall_limit, &mut written)
            .await
            .is_err()
        {
            return;
        }
    }
    let (Transport::Plain(client), BackendStream::Plain(backend)) = (&client, &backend) else {
        // TLS: the bytes are decrypted and encrypted on the way.
        if let Err(e) = crate::transport::relay_copy(&client, &backend, stall_limit).await {
            tracing::debug!(error = %e, "tunnel ended");
        }
        drop(in_flight);
        return;
    };
    let relayed = crate::relay::Relayed::default();
    if let Err(e) = crate::relay::relay(client, backend, &relayed).await {
        tracing::debug!(error = %e, "tunnel ended");
    }
    drop(in_flight);
}
