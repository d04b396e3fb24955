//! One virtual router running: the [`Machine`] fed by the advert socket,
//! its timers and halb's own health (fault), its [`Action`]s carried out on
//! the interface. Its status is published for the API and the metrics.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::addresses::Addresses;
use crate::machine::{Action, Machine, Settings, VrrpState};
use crate::net::{AdvertSocket, Arp, Interface};
use crate::packet::{Advert, GROUP};

/// How long a virtual IP stays on the interface without a refresh: a master
/// that dies (SIGKILL, power) loses its addresses within about this long.
pub const VIP_LIFETIME_SECS: u32 = 1;
/// How often a master renews its addresses' lifetime.
const REFRESH_EVERY: Duration = Duration::from_millis(250);
/// Gratuitous ARPs sent on takeover, as keepalived does (5 by default).
const GARP_REPEAT: usize = 5;
const GARP_SPACING: Duration = Duration::from_millis(100);
/// At SIGTERM, how long a master waits for the next master's advert.
const HANDOVER_WAIT: Duration = Duration::from_secs(1);
/// Then, how long it keeps the addresses while clients learn the new MAC.
const HANDOVER_GRACE: Duration = Duration::from_millis(200);
/// How often the interface's carrier is looked at: a lost link is a fault.
const CARRIER_EVERY: Duration = Duration::from_millis(20);

/// One `[[vrrp.instance]]`, as the speaker needs it.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    pub name: String,
    pub vrid: u8,
    pub priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    pub virtual_ips: Vec<(Ipv4Addr, u8)>,
    /// Unicast destinations; empty: multicast.
    pub unicast_peers: Vec<Ipv4Addr>,
}

/// What the API shows of an instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    pub name: String,
    pub vrid: u8,
    pub state: VrrpState,
    pub priority: u8,
    pub effective_priority: u8,
    /// The master's address as this node knows it.
    pub master: Option<String>,
    pub transitions: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Packets dropped: bad TTL, version, checksum, length or interval.
    pub adverts_bad: u64,
    /// The last transition's reason.
    pub reason: String,
}

/// Every instance's status, shared with the API.
#[derive(Debug, Default)]
pub struct Registry {
    instances: Mutex<Vec<InstanceStatus>>,
}

impl Registry {
    pub fn snapshot(&self) -> Vec<InstanceStatus> {
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn publish(&self, status: InstanceStatus) {
        let mut instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        match instances.iter_mut().find(|i| i.name == status.name) {
            Some(slot) => *slot = status,
            None => instances.push(status),
        }
    }
}

/// A state change, for logs, alerts and `notify`.
#[derive(Debug, Clone)]
pub struct Transition {
    pub instance: String,
    pub from: VrrpState,
    pub to: VrrpState,
    pub reason: String,
}

/// Orders to a running instance.
pub enum Control {
    /// A tracked pool went unusable (`true`) or usable again.
    Fault(bool, String),
    /// Give the addresses up (priority 0 first if master), then answer.
    Shutdown(oneshot::Sender<()>),
}

/// Only the instance's own task counts: plain numbers.
#[derive(Default)]
struct Counters {
    sent: u64,
    received: u64,
    bad: u64,
}

/// Starts an instance on `interface`; it runs until told to shut down.
/// Stale copies of its virtual IPs (left by a killed halb) are removed first.
pub async fn start(
    interface: &Interface,
    settings: InstanceSettings,
    fault: Option<String>,
    registry: Arc<Registry>,
    transitions: mpsc::UnboundedSender<Transition>,
) -> std::io::Result<mpsc::Sender<Control>> {
    let netlink = Addresses::open()?;
    let vips: Vec<Ipv4Addr> = settings.virtual_ips.iter().map(|(ip, _)| *ip).collect();
    let primary = netlink
        .list(interface.index)
        .await?
        .into_iter()
        .find(|a| !a.secondary && !vips.contains(&a.address))
        .map(|a| a.address)
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "interface {} has no IPv4 address of its own to send adverts from",
                interface.name
            ))
        })?;
    for (ip, prefix) in &settings.virtual_ips {
        netlink.remove(interface.index, *ip, *prefix).await?;
    }
    let socket = AdvertSocket::open(interface, primary)?;
    let arp = Arp::open(interface)?;
    let (control, orders) = mpsc::channel(8);
    let machine = Machine::new(Settings {
        priority: settings.priority,
        advert_interval: settings.advert_interval,
        preempt: settings.preempt,
        address: primary,
    });
    let runner = Runner {
        interface: interface.clone(),
        settings,
        primary,
        machine,
        socket,
        netlink,
        arp: Arc::new(arp),
        registry,
        transitions,
        counters: Counters::default(),
        origin: Instant::now(),
        reason: String::new(),
        pool_fault: None,
        link_down: false,
    };
    tokio::spawn(runner.run(orders, fault));
    Ok(control)
}

struct Runner {
    interface: Interface,
    settings: InstanceSettings,
    primary: Ipv4Addr,
    machine: Machine,
    socket: AdvertSocket,
    /// Netlink requests go to a thread of their own, off the runtime.
    netlink: Addresses,
    arp: Arc<Arp>,
    registry: Arc<Registry>,
    transitions: mpsc::UnboundedSender<Transition>,
    counters: Counters,
    origin: Instant,
    reason: String,
    /// Why a tracked pool puts the instance in fault, if one does.
    pool_fault: Option<String>,
    /// The interface has no carrier: a node cut off must not keep the
    /// addresses (it could not tell neighbours when its link returns).
    link_down: bool,
}

impl Runner {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    async fn run(mut self, mut orders: mpsc::Receiver<Control>, fault: Option<String>) {
        let now = self.now();
        let actions = self.machine.start(now);
        self.carry_out(actions).await;
        self.pool_fault = fault;
        self.link_down = !self.interface.has_carrier();
        let actions = self.refault(now, String::new());
        self.carry_out(actions).await;
        self.publish();
        let mut buffer = vec![0u8; 2048];
        let mut refresh = tokio::time::interval(REFRESH_EVERY);
        let mut carrier = tokio::time::interval(CARRIER_EVERY);
        loop {
            let deadline = self
                .machine
                .deadline()
                .map(|d| self.origin + d)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let actions = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.now();
                    self.machine.on_timer(now)
                }
                _ = refresh.tick(), if self.machine.state() == VrrpState::Master => {
                    self.refresh_vips().await;
                    Vec::new()
                }
                _ = carrier.tick() => {
                    let down = !self.interface.has_carrier();
                    if down == self.link_down {
                        Vec::new()
                    } else {
                        self.link_down = down;
                        let now = self.now();
                        self.refault(now, "every tracked pool has a usable backend".to_owned())
                    }
                }
                received = self.socket.recv(&mut buffer) => match received {
                    Ok(n) => self.on_packet(&buffer[..n]),
                    Err(e) => {
                        tracing::warn!(instance = %self.settings.name, error = %e, "VRRP socket receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Vec::new()
                    }
                },
                order = orders.recv() => match order {
                    Some(Control::Fault(fault, reason)) => {
                        let now = self.now();
                        self.pool_fault = fault.then(|| reason.clone());
                        self.refault(now, reason)
                    }
                    Some(Control::Shutdown(done)) => {
                        if self.machine.state() == VrrpState::Master {
                            tracing::info!(instance = %self.settings.name, "stopping: sending a priority-0 advert and giving the virtual IPs up");
                        }
                        if self.machine.state() == VrrpState::Master {
                            self.hand_over(&mut buffer).await;
                        }
                        let actions = self.machine.shutdown();
                        self.carry_out(actions).await;
                        self.publish();
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        let actions = self.machine.shutdown();
                        self.carry_out(actions).await;
                        return;
                    }
                },
            };
            if !actions.is_empty() {
                self.carry_out(actions).await;
            }
            self.publish();
        }
    }

    /// A leaving master: priority 0 at once, so that a backup takes over
    /// after its skew only, while this node keeps the addresses and serves
    /// what still reaches it until the new master is heard (bounded), plus
    /// a grace for its gratuitous ARP to reach the clients.
    async fn hand_over(&mut self, buffer: &mut [u8]) {
        self.advertise(0).await;
        let until = Instant::now() + HANDOVER_WAIT;
        // The addresses keep being renewed while this node still serves
        // them: the wait and the grace together outlast their lifetime.
        let mut refresh = tokio::time::interval(REFRESH_EVERY);
        let heard = loop {
            let received = tokio::select! {
                _ = tokio::time::sleep_until(until) => break false,
                _ = refresh.tick() => {
                    self.refresh_vips().await;
                    continue;
                }
                received = self.socket.recv(buffer) => received,
            };
            if let Ok(n) = received {
                if let Ok(advert) = Advert::decode(&buffer[..n]) {
                    if advert.source != self.primary
                        && advert.advert.vrid == self.settings.vrid
                        && advert.advert.priority > 0
                    {
                        break true;
                    }
                }
            }
        };
        tracing::info!(instance = %self.settings.name, new_master_heard = heard, "handing the virtual IPs over");
        self.refresh_vips().await;
        tokio::time::sleep(HANDOVER_GRACE).await;
    }

    /// Enters or leaves fault from the link and the tracked pools together;
    /// `cleared` is the reason given when neither holds any more.
    fn refault(&mut self, now: Duration, cleared: String) -> Vec<Action> {
        let interface = &self.interface.name;
        let reason = match (&self.pool_fault, self.link_down) {
            (_, true) => Some(format!("interface {interface} has no carrier")),
            (Some(pool), false) => Some(pool.clone()),
            (None, false) => None,
        };
        match reason {
            Some(reason) => self.machine.set_fault(now, true, reason),
            None if self.machine.state() == VrrpState::Fault => {
                let reason = if cleared.is_empty() {
                    format!("interface {interface} has its carrier back")
                } else {
                    cleared
                };
                self.machine.set_fault(now, false, reason)
            }
            None => Vec::new(),
        }
    }

    fn on_packet(&mut self, packet: &[u8]) -> Vec<Action> {
        match Advert::decode(packet) {
            Ok(received) if received.source == self.primary => Vec::new(),
            Ok(received) if received.advert.vrid != self.settings.vrid => Vec::new(),
            Ok(received) => {
                self.counters.received += 1;
                let now = self.now();
                self.machine.on_advert(
                    now,
                    received.source,
                    received.advert.priority,
                    received.advert.interval,
                )
            }
            Err(bad) => {
                self.counters.bad += 1;
                tracing::debug!(instance = %self.settings.name, error = %bad, "VRRP packet dropped");
                Vec::new()
            }
        }
    }

    async fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Advertise { priority } => self.advertise(priority).await,
                Action::TakeVips => {
                    self.refresh_vips().await;
                    self.announce();
                }
                Action::ReleaseVips => {
                    for (ip, prefix) in self.settings.virtual_ips.clone() {
                        if let Err(e) = self.netlink.remove(self.interface.index, ip, prefix).await
                        {
                            tracing::error!(instance = %self.settings.name, vip = %ip, error = %e, "cannot remove a virtual IP");
                        }
                    }
                }
                Action::Transition { from, to, reason } => {
                    tracing::info!(
                        instance = %self.settings.name,
                        from = from.as_str(),
                        to = to.as_str(),
                        %reason,
                        "VRRP state changed"
                    );
                    self.reason = reason.clone();
                    let _ = self.transitions.send(Transition {
                        instance: self.settings.name.clone(),
                        from,
                        to,
                        reason,
                    });
                }
            }
        }
    }

    async fn advertise(&mut self, priority: u8) {
        let advert = Advert {
            vrid: self.settings.vrid,
            priority,
            interval: self.settings.advert_interval,
            addresses: self
                .settings
                .virtual_ips
                .iter()
                .map(|(ip, _)| *ip)
                .collect(),
        };
        let destinations = if self.settings.unicast_peers.is_empty() {
            vec![GROUP]
        } else {
            self.settings.unicast_peers.clone()
        };
        for destination in destinations {
            let message = advert.encode(self.primary, destination);
            match self.socket.send_to(&message, destination).await {
                Ok(()) => self.counters.sent += 1,
                Err(e) => {
                    tracing::warn!(instance = %self.settings.name, %destination, error = %e, "cannot send a VRRP advert")
                }
            }
        }
    }

    /// Adds the virtual IPs, or renews their short lifetime.
    async fn refresh_vips(&mut self) {
        for (ip, prefix) in self.settings.virtual_ips.clone() {
            if let Err(e) = self
                .netlink
                .add(self.interface.index, ip, prefix, VIP_LIFETIME_SECS)
                .await
            {
                tracing::error!(instance = %self.settings.name, vip = %ip, error = %e, "cannot add a virtual IP");
            }
        }
    }

    /// Gratuitous ARP for every virtual IP, at once and a few times more.
    fn announce(&self) {
        let arp = self.arp.clone();
        let vips: Vec<Ipv4Addr> = self
            .settings
            .virtual_ips
            .iter()
            .map(|(ip, _)| *ip)
            .collect();
        let name = self.settings.name.clone();
        tokio::spawn(async move {
            for round in 0..GARP_REPEAT {
                for vip in &vips {
                    if let Err(e) = arp.announce(*vip) {
                        tracing::warn!(instance = %name, %vip, error = %e, "cannot send gratuitous ARP");
                    }
                }
                if round + 1 < GARP_REPEAT {
                    tokio::time::sleep(GARP_SPACING).await;
                }
            }
        });
    }

    fn publish(&self) {
        self.registry.publish(InstanceStatus {
            name: self.settings.name.clone(),
            vrid: self.settings.vrid,
            state: self.machine.state(),
            priority: self.machine.priority(),
            effective_priority: self.machine.effective_priority(),
            master: self.machine.master().map(|m| m.to_string()),
            transitions: self.machine.transitions(),
            adverts_sent: self.counters.sent,
            adverts_received: self.counters.received,
            adverts_bad: self.counters.bad,
            reason: self.reason.clone(),
        });
    }
}
