//! A listener's routes: for each of its rules (`[[listener.route]]`) and
//! for the requests no rule matches, the pool that traffic goes to, the
//! counters of that traffic per backend, and the access log. Read as one
//! snapshot per request (HTTP) or connection (TCP) and swapped as one when
//! the config or a pool changes.
//!
//! Counters are cells created with the route, indexed like the pool's
//! backends, so counting a response is one atomic add: no lock, no map.
//! A route rebuilt at reload keeps the cells of the backends its pool still
//! has (the same `Arc`s), so requests still in flight on the old route count
//! into the same cells and no count goes backwards.

use std::sync::Arc;

use halb_access_log::AccessLogSink;
use halb_config::Listener;
use halb_metrics::{Counter, Gauge, Histogram};

use crate::state::PoolState;

/// The name of the route of requests that no rule matches.
pub const DEFAULT_ROUTE: &str = "default";

/// The status classes responses are counted by, in [`RouteCounters::responses`] order.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One listener's own metrics, for its whole life.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    /// Client connections accepted.
    pub connections: Counter,
    /// Client connections open now.
    pub active_connections: Gauge,
    /// HTTP: from the request head's arrival to the end of the response, as
    /// the client saw it.
    pub request_duration: Histogram,
    /// TLS handshakes (a listener with `[listener.tls]`).
    pub tls: crate::tls::TlsMetrics,
    /// HTTP/2 connections and streams (an HTTP listener).
    pub http2: crate::http::Http2Metrics,
}

/// One listener's traffic to one backend, or (for [`Route::local`]) what
/// halb answered itself.
#[derive(Debug, Default)]
pub struct RouteCounters {
    /// HTTP responses by status class (see [`STATUS_CLASSES`]).
    pub responses: [Counter; 5],
    /// HTTP requests the client gave up on before a response head was ready.
    pub abandoned: Counter,
    /// TCP connections relayed; in [`Route::local`], TCP connections closed
    /// because no backend could be reached.
    pub connections: Counter,
}

impl RouteCounters {
    /// Count one response; statuses above 599 count as 5xx.
    #[inline]
    pub fn count_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].inc();
    }
}

/// Where some of a listener's traffic goes now, and what it counts into.
#[derive(Debug)]
pub struct Route {
    pub listener: Arc<str>,
    /// The rule's name, or [`DEFAULT_ROUTE`].
    pub name: Arc<str>,
    pub metrics: Arc<ListenerMetrics>,
    pub pool: Arc<PoolState>,
    pub pool_name: Arc<str>,
    /// Per backend, by index in `pool.backends`.
    pub backends: Box<[Arc<RouteCounters>]>,
    /// Answers halb made itself (no backend, or every try failed).
    pub local: Arc<RouteCounters>,
    /// Where access log records go; `None` when the access log is off.
    pub access_log: Option<AccessLogSink>,
}

impl Route {
    pub(crate) fn new(
        listener: Arc<str>,
        name: Arc<str>,
        metrics: Arc<ListenerMetrics>,
        pool: Arc<PoolState>,
        access_log: Option<AccessLogSink>,
    ) -> Route {
        Route {
            listener,
            name,
            metrics,
            pool_name: pool.config.name.as_str().into(),
            backends: pool.backends.iter().map(|_| Arc::default()).collect(),
            local: Arc::default(),
            pool,
            access_log,
        }
    }

    /// This listener's route to `pool` with `access_log`, keeping the
    /// counters of every backend `pool` shares with this route's pool (when
    /// it is the same pool by name).
    pub(crate) fn rebuilt(&self, pool: Arc<PoolState>, access_log: Option<AccessLogSink>) -> Route {
        if Arc::ptr_eq(&pool, &self.pool) {
            return Route {
                listener: self.listener.clone(),
                name: self.name.clone(),
                metrics: self.metrics.clone(),
                pool,
                pool_name: self.pool_name.clone(),
                backends: self.backends.clone(),
                local: self.local.clone(),
                access_log,
            };
        }
        let mut route = Route::new(
            self.listener.clone(),
            self.name.clone(),
            self.metrics.clone(),
            pool,
            access_log,
        );
        if *route.pool_name == *self.pool_name {
            route.local = self.local.clone();
            for (counters, backend) in route.backends.iter_mut().zip(&route.pool.backends) {
                let kept = self
                    .pool
                    .backends
                    .iter()
                    .position(|old| old.address == backend.address);
                if let Some(index) = kept {
                    *counters = self.backends[index].clone();
                }
            }
        }
        route
    }
}

/// One `[[listener.route]]`: the requests it takes, and where they go.
#[derive(Debug)]
pub struct Rule {
    pub matcher: halb_config::Route,
    pub route: Arc<Route>,
}

/// A listener's routes: its rules in order (the first that matches wins),
/// and the route of every other request (the listener's `pool`).
#[derive(Debug)]
pub struct Routes {
    pub rules: Box<[Rule]>,
    pub default: Arc<Route>,
}

impl Routes {
    /// The routes `config` asks for over `pools`, keeping the counters of
    /// each route of `previous` with the same name and pool, for the
    /// backends that pool still has. Every pool named must be in `pools`.
    pub(crate) fn build(
        config: &Listener,
        metrics: &Arc<ListenerMetrics>,
        pools: &[Arc<PoolState>],
        access_log: Option<AccessLogSink>,
        previous: Option<&Routes>,
    ) -> Routes {
        let listener: Arc<str> = config.name.as_str().into();
        let route = |name: &str, pool_name: &str| {
            let pool = crate::reload::pool_named(pools, pool_name);
            let kept = previous.and_then(|p| p.all().find(|r| &*r.name == name));
            let mut route = match kept {
                Some(kept) => kept.rebuilt(pool, access_log.clone()),
                None => Route::new(
                    listener.clone(),
                    name.into(),
                    metrics.clone(),
                    pool,
                    access_log.clone(),
                ),
            };
            route.listener = listener.clone();
            Arc::new(route)
        };
        Routes {
            rules: (config.routes.iter())
                .map(|rule| Rule {
                    matcher: rule.clone(),
                    route: route(&rule.name, &rule.pool),
                })
                .collect(),
            default: route(DEFAULT_ROUTE, &config.pool),
        }
    }

    /// Every route: the default first, then the rules in order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Route>> {
        std::iter::once(&self.default).chain(self.rules.iter().map(|rule| &rule.route))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool named `name` over backends on 127.0.0.1 at `ports`.
    fn pool(name: &str, ports: &[u16]) -> Arc<PoolState> {
        let mut toml = format!(
            "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"{name}\"\n\
             [[pool]]\nname = \"{name}\"\n"
        );
        for port in ports {
            toml.push_str(&format!(
                "[[pool.backend]]\naddress = \"127.0.0.1:{port}\"\n"
            ));
        }
        let config = halb_config::parse(&toml).expect("a valid config");
        let pool = config.pools.into_iter().next().expect("one pool");
        Arc::new(PoolState::new(pool, &halb_state::State::new()))
    }

    #[test]
    fn a_listener_renamed_in_place_counts_under_its_new_name() {
        let pool = pool("app", &[1]);
        let config = halb_config::parse(
            "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
             [[pool]]\nname = \"app\"\n[[pool.backend]]\naddress = \"127.0.0.1:1\"\n",
        )
        .expect("a valid config");
        let mut listener = config.listeners[0].clone();
        let bound = "127.0.0.1:1".parse().unwrap();
        let pools = [pool];
        let context = crate::ListenerContext::new(listener.clone(), bound, &pools, None);
        let before = context.routes.load().default.clone();
        before.backends[0].count_response(200);

        listener.name = "www".to_owned();
        context.config.store(Arc::new(listener));
        context.set_routes(&pools);
        let after = context.routes.load().default.clone();
        assert_eq!(&*after.listener, "www");
        assert!(Arc::ptr_eq(&after.backends[0], &before.backends[0]));
    }

    #[test]
    fn a_rebuilt_route_keeps_the_cells_of_the_backends_it_keeps() {
        let route = Route::new(
            "web".into(),
            DEFAULT_ROUTE.into(),
            Arc::default(),
            pool("app", &[1, 2]),
            None,
        );
        route.backends[1].count_response(200);
        route.local.count_response(502);

        let rebuilt = route.rebuilt(pool("app", &[2, 3]), None);
        assert!(
            Arc::ptr_eq(&rebuilt.backends[0], &route.backends[1]),
            "port 2 kept"
        );
        assert_eq!(rebuilt.backends[0].responses[1].get(), 1);
        assert_eq!(rebuilt.backends[1].responses[1].get(), 0, "port 3 is new");
        assert!(Arc::ptr_eq(&rebuilt.local, &route.local));
        assert!(Arc::ptr_eq(&rebuilt.metrics, &route.metrics));

        let elsewhere = rebuilt.rebuilt(pool("other", &[2]), None);
        assert_eq!(&*elsewhere.pool_name, "other");
        assert_eq!(
            elsewhere.backends[0].responses[1].get(),
            0,
            "another pool counts apart"
        );
        assert_eq!(elsewhere.local.responses[4].get(), 0);
    }

    #[test]
    fn statuses_count_by_class() {
        let counters = RouteCounters::default();
        for status in [101, 200, 204, 302, 404, 499, 500, 503, 999] {
            counters.count_response(status);
        }
        let counts: Vec<u64> = counters.responses.iter().map(Counter::get).collect();
        assert_eq!(counts, [1, 2, 1, 2, 3]);
    }
}
