//! halb's schema: which keys each table has and the TOML type of each.
//! Reading a new key means adding it to its table's key list and reading
//! it in that table's function here.

use super::{Table, Walker};
use crate::raw::{
    Header, RawAccessLog, RawAdmin, RawAlerts, RawBackend, RawChaos, RawConfig, RawConnection,
    RawHealthCheck, RawLimits, RawListener, RawLog, RawOutlierDetection, RawPool, RawRetryBudget,
    RawRoute, RawRouteHeader, RawRuntime, RawSticky, RawVrrp, RawVrrpInstance, Slot,
};
use crate::raw::{RawListenerTls, RawPoolTls, RawSniCertificate};

const ROOT_KEYS: &[&str] = &[
    "runtime",
    "admin",
    "listener",
    "pool",
    "log",
    "access_log",
    "alerts",
    "vrrp",
    "cluster",
    "chaos",
];
const VRRP_KEYS: &[&str] = &["interface", "unicast_peers", "instance"];
const VRRP_INSTANCE_KEYS: &[&str] = &[
    "name",
    "vrid",
    "priority",
    "advert_interval",
    "preempt",
    "virtual_ips",
    "track_pools",
    "notify",
];
const RUNTIME_KEYS: &[&str] = &["workers", "drain_timeout", "resolve_interval", "zone"];
const LOG_KEYS: &[&str] = &["level"];
const ACCESS_LOG_KEYS: &[&str] = &["format", "path"];
const ALERTS_KEYS: &[&str] = &["webhooks", "timeout", "max_attempts"];
const ADMIN_KEYS: &[&str] = &["bind", "token"];
const CHAOS_KEYS: &[&str] = &["allow"];
const LISTENER_KEYS: &[&str] = &[
    "name",
    "bind",
    "protocol",
    "pool",
    "request_head_timeout",
    "idle_timeout",
    "max_header_bytes",
    "route",
    "proxy_protocol",
    "trusted_proxies",
    "max_connections",
    "body_timeout",
    "limits",
    "tls",
];
const LIMITS_KEYS: &[&str] = &["per_ip_connections", "per_ip_rate"];
const LISTENER_TLS_KEYS: &[&str] = &["cert", "key", "sni"];
const SNI_KEYS: &[&str] = &["name", "cert", "key"];
const ROUTE_KEYS: &[&str] = &["name", "host", "path_prefix", "path", "header", "pool"];
const ROUTE_HEADER_KEYS: &[&str] = &["name", "value"];
const POOL_KEYS: &[&str] = &[
    "name",
    "algorithm",
    "hash_key",
    "retries",
    "connect_timeout",
    "timeout",
    "drain_timeout",
    "slow_start",
    "panic_threshold",
    "overflow",
    "health_check",
    "on_down",
    "outlier_detection",
    "retry_budget",
    "backend",
    "sticky",
    "send_proxy",
    "tls",
];
const POOL_TLS_KEYS: &[&str] = &["ca", "sni", "verify", "cert", "key"];
const HEALTH_CHECK_KEYS: &[&str] = &[
    "kind",
    "path",
    "interval",
    "timeout",
    "rise",
    "fall",
    "port",
    "method",
    "host",
    "expect_status",
    "expect_body",
    "role",
    "user",
    "password",
    "password_env",
    "database",
];
const OUTLIER_DETECTION_KEYS: &[&str] = &[
    "consecutive_failures",
    "base_ejection",
    "max_ejection_percent",
    "max_ejection",
    "count_5xx",
];
const RETRY_BUDGET_KEYS: &[&str] = &["percent", "min_per_second"];
const STICKY_KEYS: &[&str] = &["kind", "cookie", "key", "ttl", "size", "secret"];
const BACKEND_KEYS: &[&str] = &["address", "weight", "backup", "priority", "zone"];

impl Walker {
    pub(super) fn config(&mut self, root: &Table<'_>) -> RawConfig {
        self.reject_unknown_keys(root, ROOT_KEYS);
        let runtime = match self.table(root, "runtime") {
            Slot::Set(table) => self.runtime(&table.value),
            Slot::Missing | Slot::Invalid => RawRuntime {
                at: Header {
                    path: "runtime".to_owned(),
                    line: None,
                },
                workers: Slot::Missing,
                drain_timeout: Slot::Missing,
                resolve_interval: Slot::Missing,
                zone: Slot::Missing,
            },
        };
        let log = self.table(root, "log").map(|table| self.log(table));
        let access_log = self
            .table(root, "access_log")
            .map(|table| self.access_log(table));
        let alerts = self.table(root, "alerts").map(|table| self.alerts(table));
        let admin = self.table(root, "admin").map(|table| self.admin(table));
        let vrrp = self.table(root, "vrrp").map(|table| self.vrrp(table));
        let listeners = self
            .array_of_tables(root, "listener")
            .map(|tables| tables.iter().map(|t| self.listener(t)).collect());
        let pools = self
            .array_of_tables(root, "pool")
            .map(|tables| tables.iter().map(|t| self.pool(t)).collect());
        let cluster = self.table(root, "cluster").map(|table| self.cluster(table));
        let chaos = self.table(root, "chaos").map(|table| self.chaos(table));
        RawConfig {
            chaos,
            root: root.at.clone(),
            runtime,
            log,
            access_log,
            alerts,
            vrrp,
            admin,
            listeners,
            pools,
            cluster,
        }
    }

    fn runtime(&mut self, table: &Table<'_>) -> RawRuntime {
        self.reject_unknown_keys(table, RUNTIME_KEYS);
        RawRuntime {
            at: table.at.clone(),
            workers: self.integer(table, "workers"),
            drain_timeout: self.duration(table, "drain_timeout"),
            resolve_interval: self.duration(table, "resolve_interval"),
            zone: self.string(table, "zone"),
        }
    }

    fn log(&mut self, table: &Table<'_>) -> RawLog {
        self.reject_unknown_keys(table, LOG_KEYS);
        RawLog {
            at: table.at.clone(),
            level: self.string(table, "level"),
        }
    }

    fn access_log(&mut self, table: &Table<'_>) -> RawAccessLog {
        self.reject_unknown_keys(table, ACCESS_LOG_KEYS);
        RawAccessLog {
            at: table.at.clone(),
            format: self.string(table, "format"),
            path: self.string(table, "path"),
        }
    }

    fn alerts(&mut self, table: &Table<'_>) -> RawAlerts {
        self.reject_unknown_keys(table, ALERTS_KEYS);
        RawAlerts {
            at: table.at.clone(),
            webhooks: self.string_array(table, "webhooks"),
            timeout: self.duration(table, "timeout"),
            max_attempts: self.integer(table, "max_attempts"),
        }
    }

    fn vrrp(&mut self, table: &Table<'_>) -> RawVrrp {
        self.reject_unknown_keys(table, VRRP_KEYS);
        RawVrrp {
            at: table.at.clone(),
            interface: self.string(table, "interface"),
            unicast_peers: self.string_array(table, "unicast_peers"),
            instances: self
                .array_of_tables(table, "instance")
                .map(|tables| tables.iter().map(|t| self.vrrp_instance(t)).collect()),
        }
    }

    fn vrrp_instance(&mut self, table: &Table<'_>) -> RawVrrpInstance {
        self.reject_unknown_keys(table, VRRP_INSTANCE_KEYS);
        RawVrrpInstance {
            at: table.at.clone(),
            name: self.string(table, "name"),
            vrid: self.integer(table, "vrid"),
            priority: self.integer(table, "priority"),
            advert_interval: self.duration(table, "advert_interval"),
            preempt: self.boolean(table, "preempt"),
            virtual_ips: self.string_array(table, "virtual_ips"),
            track_pools: self.string_array(table, "track_pools"),
            notify: self.string(table, "notify"),
        }
    }

    fn chaos(&mut self, table: &Table<'_>) -> RawChaos {
        self.reject_unknown_keys(table, CHAOS_KEYS);
        RawChaos {
            at: table.at.clone(),
            allow: self.boolean(table, "allow"),
        }
    }

    fn admin(&mut self, table: &Table<'_>) -> RawAdmin {
        self.reject_unknown_keys(table, ADMIN_KEYS);
        RawAdmin {
            at: table.at.clone(),
            bind: self.string(table, "bind"),
            token: self.string(table, "token"),
        }
    }

    fn listener(&mut self, table: &Table<'_>) -> RawListener {
        self.reject_unknown_keys(table, LISTENER_KEYS);
        RawListener {
            at: table.at.clone(),
            name: self.string(table, "name"),
            bind: self.string(table, "bind"),
            protocol: self.string(table, "protocol"),
            pool: self.string(table, "pool"),
            request_head_timeout: self.duration(table, "request_head_timeout"),
            idle_timeout: self.duration(table, "idle_timeout"),
            max_header_bytes: self.integer(table, "max_header_bytes"),
            routes: self
                .array_of_tables(table, "route")
                .map(|tables| tables.iter().map(|t| self.route(t)).collect()),
            connection: RawConnection {
                proxy_protocol: self.boolean(table, "proxy_protocol"),
                trusted_proxies: self.string_array(table, "trusted_proxies"),
                max_connections: self.integer(table, "max_connections"),
                body_timeout: self.duration(table, "body_timeout"),
                limits: self.table(table, "limits").map(|t| self.limits(t)),
            },
            tls: self.table(table, "tls").map(|t| self.listener_tls(t)),
        }
    }

    fn limits(&mut self, table: &Table<'_>) -> RawLimits {
        self.reject_unknown_keys(table, LIMITS_KEYS);
        RawLimits {
            at: table.at.clone(),
            per_ip_connections: self.integer(table, "per_ip_connections"),
            per_ip_rate: self.integer(table, "per_ip_rate"),
        }
    }

    fn listener_tls(&mut self, table: &Table<'_>) -> RawListenerTls {
        self.reject_unknown_keys(table, LISTENER_TLS_KEYS);
        RawListenerTls {
            at: table.at.clone(),
            cert: self.string(table, "cert"),
            key: self.string(table, "key"),
            sni: self
                .array_of_tables(table, "sni")
                .map(|tables| tables.iter().map(|t| self.sni_certificate(t)).collect()),
        }
    }

    fn sni_certificate(&mut self, table: &Table<'_>) -> RawSniCertificate {
        self.reject_unknown_keys(table, SNI_KEYS);
        RawSniCertificate {
            at: table.at.clone(),
            name: self.string(table, "name"),
            cert: self.string(table, "cert"),
            key: self.string(table, "key"),
        }
    }

    fn route(&mut self, table: &Table<'_>) -> RawRoute {
        self.reject_unknown_keys(table, ROUTE_KEYS);
        RawRoute {
            at: table.at.clone(),
            name: self.string(table, "name"),
            host: self.string(table, "host"),
            path_prefix: self.string(table, "path_prefix"),
            path: self.string(table, "path"),
            header: self.table(table, "header").map(|t| self.route_header(t)),
            pool: self.string(table, "pool"),
        }
    }

    fn route_header(&mut self, table: &Table<'_>) -> RawRouteHeader {
        self.reject_unknown_keys(table, ROUTE_HEADER_KEYS);
        RawRouteHeader {
            at: table.at.clone(),
            name: self.string(table, "name"),
            value: self.string(table, "value"),
        }
    }

    fn pool(&mut self, table: &Table<'_>) -> RawPool {
        self.reject_unknown_keys(table, POOL_KEYS);
        RawPool {
            at: table.at.clone(),
            name: self.string(table, "name"),
            algorithm: self.string(table, "algorithm"),
            hash_key: self.string(table, "hash_key"),
            retries: self.integer(table, "retries"),
            connect_timeout: self.duration(table, "connect_timeout"),
            timeout: self.duration(table, "timeout"),
            health_check: self
                .table(table, "health_check")
                .map(|t| self.health_check(t)),
            on_down: self.string(table, "on_down"),
            outlier_detection: self
                .table(table, "outlier_detection")
                .map(|t| self.outlier_detection(t)),
            retry_budget: self
                .table(table, "retry_budget")
                .map(|t| self.retry_budget(t)),
            drain_timeout: self.duration(table, "drain_timeout"),
            slow_start: self.duration(table, "slow_start"),
            panic_threshold: self.integer(table, "panic_threshold"),
            overflow: self.integer(table, "overflow"),
            sticky: self.table(table, "sticky").map(|t| self.sticky(t)),
            backends: self
                .array_of_tables(table, "backend")
                .map(|tables| tables.iter().map(|t| self.backend(t)).collect()),
            send_proxy: self.string(table, "send_proxy"),
            tls: self.pool_tls(table),
        }
    }

    /// `tls = true` (defaults) or a `[pool.tls]` table.
    fn pool_tls(&mut self, pool: &Table<'_>) -> Slot<RawPoolTls> {
        let switch = pool
            .entries
            .get("tls")
            .and_then(|item| item.as_value())
            .and_then(|value| value.as_bool());
        if switch.is_some() {
            return self.boolean(pool, "tls").map(|&on| RawPoolTls {
                at: Header {
                    path: pool.at.path_of("tls"),
                    line: pool.at.line,
                },
                switch: Some(on),
                ca: Slot::Missing,
                sni: Slot::Missing,
                verify: Slot::Missing,
                cert: Slot::Missing,
                key: Slot::Missing,
            });
        }
        match self.table(pool, "tls") {
            Slot::Missing => Slot::Missing,
            Slot::Invalid => Slot::Invalid,
            Slot::Set(field) => {
                let table = field.value;
                self.reject_unknown_keys(&table, POOL_TLS_KEYS);
                Slot::Set(crate::raw::Field {
                    value: RawPoolTls {
                        at: table.at.clone(),
                        switch: None,
                        ca: self.string(&table, "ca"),
                        sni: self.string(&table, "sni"),
                        verify: self.boolean(&table, "verify"),
                        cert: self.string(&table, "cert"),
                        key: self.string(&table, "key"),
                    },
                    line: field.line,
                })
            }
        }
    }

    fn health_check(&mut self, table: &Table<'_>) -> RawHealthCheck {
        self.reject_unknown_keys(table, HEALTH_CHECK_KEYS);
        RawHealthCheck {
            at: table.at.clone(),
            kind: self.string(table, "kind"),
            path: self.string(table, "path"),
            interval: self.duration(table, "interval"),
            timeout: self.duration(table, "timeout"),
            rise: self.integer(table, "rise"),
            fall: self.integer(table, "fall"),
            port: self.integer(table, "port"),
            method: self.string(table, "method"),
            host: self.string(table, "host"),
            expect_status: self.status(table, "expect_status"),
            expect_body: self.string(table, "expect_body"),
            role: self.string(table, "role"),
            user: self.string(table, "user"),
            password: self.string(table, "password"),
            password_env: self.string(table, "password_env"),
            database: self.string(table, "database"),
        }
    }

    fn outlier_detection(&mut self, table: &Table<'_>) -> RawOutlierDetection {
        self.reject_unknown_keys(table, OUTLIER_DETECTION_KEYS);
        RawOutlierDetection {
            at: table.at.clone(),
            consecutive_failures: self.integer(table, "consecutive_failures"),
            base_ejection: self.duration(table, "base_ejection"),
            max_ejection_percent: self.integer(table, "max_ejection_percent"),
            max_ejection: self.duration(table, "max_ejection"),
            count_5xx: self.boolean(table, "count_5xx"),
        }
    }

    fn sticky(&mut self, table: &Table<'_>) -> RawSticky {
        self.reject_unknown_keys(table, STICKY_KEYS);
        RawSticky {
            at: table.at.clone(),
            kind: self.string(table, "kind"),
            cookie: self.string(table, "cookie"),
            key: self.string(table, "key"),
            ttl: self.duration(table, "ttl"),
            size: self.integer(table, "size"),
            secret: self.string(table, "secret"),
        }
    }

    fn retry_budget(&mut self, table: &Table<'_>) -> RawRetryBudget {
        self.reject_unknown_keys(table, RETRY_BUDGET_KEYS);
        RawRetryBudget {
            at: table.at.clone(),
            percent: self.integer(table, "percent"),
            min_per_second: self.integer(table, "min_per_second"),
        }
    }

    fn backend(&mut self, table: &Table<'_>) -> RawBackend {
        self.reject_unknown_keys(table, BACKEND_KEYS);
        RawBackend {
            at: table.at.clone(),
            address: self.string(table, "address"),
            weight: self.integer(table, "weight"),
            backup: self.boolean(table, "backup"),
            priority: self.integer(table, "priority"),
            zone: self.string(table, "zone"),
        }
    }
}
