//! Host-name backends (`address = "app.internal:8080"`): looked up through
//! the system resolver (getaddrinfo: /etc/hosts, DNS, whatever nsswitch
//! says) at start, then every `[runtime] resolve_interval`. Each address a
//! name has is a backend; the config the proxy runs is the declared one with
//! the names replaced by their addresses ([`Config::with_resolved`]), so an
//! address that appears is added and one that goes is drained, as any
//! other change. A lookup that fails keeps the last good answer.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use halb_config::{Answers, Config};
use tokio::sync::{mpsc, watch};

/// How long one lookup may take before it counts as failed.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A `(host, port)` a backend names.
pub type Name = (String, u16);

/// What one round of lookups found: each name's addresses, or why not.
pub type Round = Vec<(Name, Result<Vec<IpAddr>, String>)>;

/// Looks every name up at once; each gets `timeout`.
pub async fn lookup(names: &BTreeSet<Name>, timeout: Duration) -> Round {
    let mut lookups = tokio::task::JoinSet::new();
    for name in names.iter().cloned() {
        lookups.spawn(async move {
            let host = name.0.clone();
            let found =
                tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), name.1)))
                    .await;
            let answer = match found {
                Err(_) => Err(format!("no answer within {timeout:?}")),
                Ok(Err(e)) => Err(e.to_string()),
                Ok(Ok(addresses)) => {
                    let mut ips: Vec<IpAddr> = addresses.map(|a| a.ip()).collect();
                    ips.sort();
                    ips.dedup();
                    if ips.is_empty() {
                        Err("the name has no addresses".to_owned())
                    } else {
                        Ok(ips)
                    }
                }
            };
            (name, answer)
        });
    }
    lookups.join_all().await
}

/// The last good answer of every name, and which names fail now.
#[derive(Default)]
pub struct Resolver {
    answers: Answers,
    failing: HashSet<Name>,
}

impl Resolver {
    pub fn answers(&self) -> &Answers {
        &self.answers
    }

    /// Whether `name` has had an answer yet.
    pub fn knows(&self, name: &Name) -> bool {
        self.answers.contains_key(name)
    }

    /// Takes a round of lookups in; whether any name's addresses changed.
    /// A failure keeps the name's last good answer and is logged once, until
    /// the name resolves again.
    pub fn take(&mut self, round: Round) -> bool {
        let mut changed = false;
        for (name, answer) in round {
            let shown = format!("{}:{}", name.0, name.1);
            match answer {
                Ok(ips) => {
                    if self.failing.remove(&name) {
                        tracing::info!(name = %shown, addresses = %list(&ips), "host name resolves again");
                    }
                    if self.answers.get(&name) != Some(&ips) {
                        tracing::info!(name = %shown, addresses = %list(&ips), "host name resolved");
                        self.answers.insert(name, ips);
                        changed = true;
                    }
                }
                Err(error) => {
                    if self.failing.insert(name.clone()) {
                        match self.answers.get(&name) {
                            Some(ips) => {
                                tracing::warn!(name = %shown, %error, kept = %list(ips), "cannot resolve a backend host name; keeping its last addresses")
                            }
                            None => {
                                tracing::warn!(name = %shown, %error, "cannot resolve a backend host name; it has no backends until it resolves")
                            }
                        }
                    }
                }
            }
        }
        changed
    }

    /// Forgets names no longer in the config.
    pub fn retain(&mut self, names: &BTreeSet<Name>) {
        self.answers.retain(|name, _| names.contains(name));
        self.failing.retain(|name| names.contains(name));
    }
}

fn list(ips: &[IpAddr]) -> String {
    let shown: Vec<String> = ips.iter().map(ToString::to_string).collect();
    shown.join(", ")
}

/// What the background lookups work on: the config's names and its interval.
pub type Wanted = (BTreeSet<Name>, Duration);

/// What the main loop should look up, from `config`.
pub fn wanted(config: &Config) -> Wanted {
    (config.backend_names(), config.runtime.resolve_interval)
}

/// Looks the wanted names up every interval, and at once when they change,
/// and hands each round to the main loop, which owns the [`Resolver`].
pub fn spawn(mut wanted: watch::Receiver<Wanted>, rounds: mpsc::Sender<Round>) {
    tokio::spawn(async move {
        loop {
            let (names, interval) = wanted.borrow_and_update().clone();
            if !names.is_empty() {
                let round = lookup(
                    &names,
                    LOOKUP_TIMEOUT.min(interval.max(Duration::from_secs(1))),
                )
                .await;
                if rounds.send(round).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                changed = wanted.changed() => if changed.is_err() { return },
            }
        }
    });
}
