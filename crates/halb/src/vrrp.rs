//! The node's VRRP instances (`[vrrp]`): started with the node, driven to
//! fault by halb's own health state (a tracked pool without a usable
//! backend), told to give their addresses up first at SIGTERM (after the
//! listeners on them have let their open connections finish). Transitions
//! are logged by the speaker, and here sent to the alert webhooks and to the
//! `notify` command.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use halb_alerts::{Alert, Alerter};
use halb_config::Vrrp;
use halb_proxy::Proxy;
use halb_state::{Event, State};
use halb_vrrp::net::Interface;
use halb_vrrp::{Control, InstanceSettings, Registry, Transition, VrrpState};
use tokio::sync::{mpsc, oneshot};

/// At SIGTERM, how long a master's open connections on its virtual IPs
/// get to finish before it hands the addresses over (its clients' new
/// connections are held meanwhile: see [`Proxy::hand_over`]).
const CONNECTIONS_FINISH: Duration = Duration::from_secs(1);

/// The running instances.
pub struct Instances {
    pub registry: Arc<Registry>,
    controls: Vec<mpsc::Sender<Control>>,
    /// Each instance's name and virtual IPs.
    virtual_ips: Vec<(String, Vec<Ipv4Addr>)>,
}

/// Why an instance tracking `pools` is in fault now, if it is.
fn fault_of(state: &State, pools: &[String]) -> Option<String> {
    pools
        .iter()
        .find(|pool| state.pool_usable(pool) == Some(false))
        .map(|pool| format!("tracked pool {pool:?} has no usable backend"))
}

pub async fn start(
    config: &Vrrp,
    state: &Arc<State>,
    alerter: Arc<ArcSwap<Alerter>>,
) -> anyhow::Result<Instances> {
    let interface = Interface::lookup(&config.interface)
        .with_context(|| format!("vrrp: interface {}", config.interface))?;
    let registry = Arc::new(Registry::default());
    let (transitions, mut transitions_rx) = mpsc::unbounded_channel::<Transition>();
    let mut controls = Vec::new();
    let mut tracking = Vec::new();
    // Subscribed before each instance's fault is first looked at: a pool
    // that becomes usable while the instances start is an event still to
    // be read, not a change missed (an instance left in fault).
    let mut events = state.subscribe();
    for instance in &config.instances {
        let settings = InstanceSettings {
            name: instance.name.clone(),
            vrid: instance.vrid,
            priority: instance.priority,
            advert_interval: instance.advert_interval,
            preempt: instance.preempt,
            virtual_ips: instance.virtual_ips.clone(),
            unicast_peers: config.unicast_peers.clone(),
        };
        let control = halb_vrrp::speaker::start(
            &interface,
            settings,
            fault_of(state, &instance.track_pools),
            registry.clone(),
            transitions.clone(),
        )
        .await
        .with_context(|| format!("vrrp instance {}", instance.name))?;
        tracking.push((instance.track_pools.clone(), control.clone()));
        controls.push(control);
    }

    // Health drives ownership: pool usability comes from the state's events.
    let watched = state.clone();
    tokio::spawn(async move {
        loop {
            // `None`: events were missed, so every instance is looked at.
            let changed: Option<Arc<str>> = match events.recv().await {
                Ok(Event::PoolUsable { pool, .. }) => Some(pool),
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            for (pools, control) in &tracking {
                if let Some(pool) = &changed {
                    if !pools.iter().any(|p| **p == **pool) {
                        continue;
                    }
                }
                let fault = fault_of(&watched, pools);
                let reason = fault
                    .clone()
                    .unwrap_or_else(|| "every tracked pool has a usable backend".to_owned());
                let _ = control.send(Control::Fault(fault.is_some(), reason)).await;
            }
        }
    });

    let notify: Vec<(String, Option<String>)> = config
        .instances
        .iter()
        .map(|i| (i.name.clone(), i.notify.clone()))
        .collect();
    tokio::spawn(async move {
        while let Some(transition) = transitions_rx.recv().await {
            alerter.load().send(Alert::VrrpTransition {
                instance: transition.instance.clone(),
                from: transition.from.as_str().to_owned(),
                to: transition.to.as_str().to_owned(),
                reason: transition.reason.clone(),
            });
            let command = notify
                .iter()
                .find(|(name, _)| *name == transition.instance)
                .and_then(|(_, command)| command.clone());
            if let Some(command) = command {
                run_notify(command, transition);
            }
        }
    });
    let virtual_ips = config
        .instances
        .iter()
        .map(|i| {
            (
                i.name.clone(),
                i.virtual_ips.iter().map(|(ip, _)| *ip).collect(),
            )
        })
        .collect();
    Ok(Instances {
        registry,
        controls,
        virtual_ips,
    })
}

/// `notify INSTANCE STATE`, as keepalived's notify scripts are called.
fn run_notify(command: String, transition: Transition) {
    tokio::spawn(async move {
        let result = tokio::process::Command::new(&command)
            .arg(&transition.instance)
            .arg(transition.to.as_str())
            .env_remove("NOTIFY_SOCKET")
            .status()
            .await;
        match result {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::warn!(%command, %status, "vrrp notify command failed"),
            Err(e) => tracing::warn!(%command, error = %e, "cannot run the vrrp notify command"),
        }
    });
}

impl Instances {
    /// The virtual IPs of the instances that are master now.
    fn held(&self) -> Vec<IpAddr> {
        let masters: Vec<String> = self
            .registry
            .snapshot()
            .into_iter()
            .filter(|status| status.state == VrrpState::Master)
            .map(|status| status.name)
            .collect();
        self.virtual_ips
            .iter()
            .filter(|(name, _)| masters.contains(name))
            .flat_map(|(_, ips)| ips.iter().map(|ip| IpAddr::V4(*ip)))
            .collect()
    }

    /// A master leaving: first its listeners on its virtual IPs (or on
    /// every address) hold new connections and let the open ones finish
    /// (bounded), so that none is open when the clients' ARP entries move
    /// to the next master; then every master sends priority 0 and removes
    /// its addresses. Returns when all have. The instances hand over
    /// together: a node holding several groups' VIPs (active-active, its
    /// peer gone) waits one handover bound, not one per instance.
    pub async fn shutdown(&self, proxy: &Proxy) {
        let held = self.held();
        if !held.is_empty() {
            let started = std::time::Instant::now();
            let serves_vip = |bound: std::net::SocketAddr| {
                bound.ip().is_unspecified() || held.contains(&bound.ip())
            };
            let open = proxy.hand_over(serves_vip, CONNECTIONS_FINISH).await;
            tracing::info!(
                still_open = open,
                took = ?started.elapsed(),
                "stopping: new connections to the virtual IPs held, open ones finished"
            );
        }
        let mut waits = Vec::with_capacity(self.controls.len());
        for control in &self.controls {
            let (done, wait) = oneshot::channel();
            if control.send(Control::Shutdown(done)).await.is_ok() {
                waits.push(wait);
            }
        }
        for wait in waits {
            let _ = wait.await;
        }
    }
}
