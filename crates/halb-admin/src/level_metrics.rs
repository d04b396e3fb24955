//! Metrics of priority levels and zones: the requests each level and each
//! side of the node's zone took, and the shares they take now.
//!
//! Requests are the sums of the backends' own counters at scrape time, so
//! that the data path counts nothing more for them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use halb_metrics::{Exposition, Kind};
use halb_proxy::levels::BACKUP_LEVEL;
use halb_proxy::Topology;

pub(crate) fn levels(text: &mut Exposition, topology: &Topology) {
    let mut by_level = text.family(
        "halb_pool_level_attempts_total",
        Kind::Counter,
        "Requests (HTTP) or connections (TCP) sent to the pool's backends of each priority level (level=\"backup\" for backup = true), retries included.",
    );
    for pool in &topology.pools {
        let mut sums: BTreeMap<u8, u64> = BTreeMap::new();
        for backend in &pool.backends {
            *sums.entry(backend.level).or_default() += backend.requests.load(Relaxed);
        }
        for (level, requests) in sums {
            let name = match level {
                BACKUP_LEVEL => "backup".to_owned(),
                level => level.to_string(),
            };
            by_level.sample(&[("pool", &pool.config.name), ("level", &name)], requests);
        }
    }
    let mut by_zone = text.family(
        "halb_pool_zone_attempts_total",
        Kind::Counter,
        "Requests (HTTP) or connections (TCP) sent to backends in the node's zone (locality=\"local\") and elsewhere (\"remote\"); only for pools on a node with [runtime] zone.",
    );
    for pool in topology.pools.iter().filter(|p| p.local_zone.is_some()) {
        let (mut local, mut remote) = (0u64, 0u64);
        for backend in &pool.backends {
            let requests = backend.requests.load(Relaxed);
            if backend.local {
                local += requests;
            } else {
                remote += requests;
            }
        }
        by_zone.sample(&[("pool", &pool.config.name), ("locality", "local")], local);
        by_zone.sample(
            &[("pool", &pool.config.name), ("locality", "remote")],
            remote,
        );
    }
    let mut shares = text.family(
        "halb_pool_level_share",
        Kind::Gauge,
        "The share (0 to 1) of the pool's new traffic each priority level takes now.",
    );
    let mut locals = Vec::new();
    for pool in &topology.pools {
        for level in pool.level_shares() {
            let name = level.priority.to_string();
            shares.sample(
                &[("pool", &pool.config.name), ("level", &name)],
                level.percent / 100.0,
            );
        }
        if let Some(local) = pool.local_share() {
            locals.push((pool.config.name.clone(), local));
        }
    }
    let mut local_share = text.family(
        "halb_pool_local_zone_share",
        Kind::Gauge,
        "The share (0 to 1) of the pool's new traffic that stays in the node's zone now; below 1 traffic spills to other zones.",
    );
    for (pool, local) in locals {
        local_share.sample(&[("pool", &pool)], local / 100.0);
    }
}
