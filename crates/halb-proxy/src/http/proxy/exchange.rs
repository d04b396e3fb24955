//! One HTTP request's account: which backend served it, how long it took,
//! how it ended. Recorded into the route's counters, the listener's
//! duration histogram and the access log when the response is done, or
//! when the client gives up before there is one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use halb_access_log::{AccessRecord, Exchange as LoggedExchange};
use http::{Method, StatusCode, Uri};

use crate::route::Route;

/// Status logged for a request whose client went away before a response
/// head was ready, as nginx logs it.
const CLIENT_CLOSED: u16 = 499;

/// A request from its head's arrival until its response is done; records
/// itself on drop. Lives in the handler, then in the response body.
#[derive(Debug)]
pub(crate) struct Exchange {
    route: Arc<Route>,
    started: Instant,
    /// Kept only when the access log is on (boxed: the exchange is moved
    /// with the response, and stays small when the log is off).
    logged: Option<Box<Logged>>,
    pub(crate) progress: Progress,
    /// `None` until a response head is ready.
    answer: Option<Answer>,
    /// Response body bytes sent to the client.
    pub(crate) bytes: u64,
}

/// What the handler learns while it forwards the request.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// The backend tried last, by index in the route's pool.
    pub(crate) backend: Option<usize>,
    /// Attempts beyond the first.
    pub(crate) retries: u32,
    /// From sending the request to the backend's response head.
    pub(crate) backend_time: Option<Duration>,
}

/// What only the access log needs.
#[derive(Debug)]
struct Logged {
    client: SocketAddr,
    method: Method,
    target: Uri,
}

#[derive(Debug, Clone, Copy)]
struct Answer {
    status: u16,
    /// False when halb made the response itself (an error).
    by_backend: bool,
}

impl Exchange {
    pub(crate) fn start(
        route: Arc<Route>,
        client: SocketAddr,
        method: &Method,
        target: &Uri,
    ) -> Self {
        let logged = route.access_log.is_some().then(|| {
            Box::new(Logged {
                client,
                method: method.clone(),
                target: target.clone(),
            })
        });
        Exchange {
            route,
            started: Instant::now(),
            logged,
            progress: Progress::default(),
            answer: None,
            bytes: 0,
        }
    }

    /// The route, to forward on, and the progress, to fill in meanwhile.
    pub(crate) fn route_and_progress(&mut self) -> (&Route, &mut Progress) {
        (&self.route, &mut self.progress)
    }

    /// The response head is ready: from a backend, or made by halb.
    pub(crate) fn answered(&mut self, status: StatusCode, by_backend: bool) {
        self.answer = Some(Answer {
            status: status.as_u16(),
            by_backend,
        });
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        let route = &*self.route;
        // An abandoned request counts against the backend it was waiting on.
        let by_backend = match self.answer {
            Some(answer) => answer.by_backend,
            None => true,
        };
        let counters = match self.progress.backend {
            Some(index) if by_backend => &route.backends[index],
            _ => &route.local,
        };
        match self.answer {
            Some(answer) => {
                counters.count_response(answer.status);
                route.metrics.request_duration.observe(duration);
            }
            None => counters.abandoned.inc(),
        }
        let (Some(sink), Some(logged)) = (&route.access_log, self.logged.take()) else {
            return;
        };
        let Logged {
            client,
            method,
            target,
        } = *logged;
        let now = SystemTime::now();
        sink.send(AccessRecord {
            time: now.checked_sub(duration).unwrap_or(now),
            client,
            listener: route.listener.clone(),
            pool: route.pool_name.clone(),
            backend: self
                .progress
                .backend
                .map(|index| route.pool.backends[index].address),
            exchange: LoggedExchange::Http {
                method,
                target,
                status: self.answer.map_or(CLIENT_CLOSED, |answer| answer.status),
            },
            bytes: self.bytes,
            duration,
            backend_duration: self.progress.backend_time,
            retries: self.progress.retries,
        });
    }
}
