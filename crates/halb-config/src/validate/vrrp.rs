//! Validation of `[vrrp]` and its `[[vrrp.instance]]`s: the interface
//! exists, priorities and VRIDs are in range and unique, advert intervals
//! are whole centiseconds, virtual IPs are in CIDR form and each belongs to
//! one instance only, tracked pools exist.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::checker::{at_line, duration, int_in, non_empty, Checker};
use crate::raw::{RawVrrp, RawVrrpInstance, Slot};
use crate::{Vrrp, VrrpInstance};

const DEFAULT_ADVERT_INTERVAL: Duration = Duration::from_secs(1);
/// Adverts carry the interval in 12 bits of centiseconds.
const MAX_ADVERT_CENTISECONDS: u128 = 4095;

/// `pools`: the defined pool names that `track_pools` may name; `None`
/// when the pools come from elsewhere (etcd) and are checked there.
pub(super) fn vrrp(c: &mut Checker, raw: RawVrrp, pools: Option<&[String]>) -> Option<Vrrp> {
    let at = &raw.at;
    let interface = c.required(at, "interface", raw.interface, |name| {
        let name = non_empty(name)?;
        if std::path::Path::new("/sys/class/net").join(&name).exists() {
            Ok(name)
        } else {
            Err(format!(
                "unknown interface {name:?}; this machine has: {}",
                interfaces().join(", ")
            ))
        }
    });
    let unicast_peers = match raw.unicast_peers {
        Slot::Missing => Some(Vec::new()),
        Slot::Invalid => None,
        Slot::Set(field) => each(c, &at.path_of("unicast_peers"), field.value, |s| {
            s.parse::<Ipv4Addr>()
                .map_err(|_| format!("expected an IPv4 address such as \"198.18.0.12\", got {s:?}"))
        }),
    };
    let instances = match raw.instances {
        Slot::Missing => {
            c.error(
                at.path_of("instance"),
                at.line,
                "[vrrp] has no [[vrrp.instance]]; add one with name, vrid, priority and virtual_ips",
            );
            None
        }
        Slot::Invalid => None,
        Slot::Set(field) => {
            let mut seen = Seen::default();
            let checked: Vec<Option<VrrpInstance>> = field
                .value
                .into_iter()
                .map(|raw| instance(c, raw, pools, &mut seen))
                .collect();
            checked.into_iter().collect()
        }
    };
    Some(Vrrp {
        interface: interface?.value,
        unicast_peers: unicast_peers?,
        instances: instances?,
    })
}

/// What the instances before this one used, with where: names, VRIDs and
/// virtual IPs are each one instance's.
#[derive(Default)]
struct Seen {
    vrids: HashMap<u8, (String, Option<usize>)>,
    names: HashMap<String, (String, Option<usize>)>,
    vips: HashMap<Ipv4Addr, (String, Option<usize>)>,
}

fn instance(
    c: &mut Checker,
    raw: RawVrrpInstance,
    pools: Option<&[String]>,
    seen: &mut Seen,
) -> Option<VrrpInstance> {
    let at = &raw.at;
    let name = c.required(at, "name", raw.name, non_empty);
    if let Some(name) = &name {
        if let Some((path, line)) = seen.names.get(&name.value) {
            let message = format!(
                "duplicate instance name {:?}; already used by {path}{}",
                name.value,
                at_line(*line)
            );
            c.error(at.path_of("name"), name.line, message);
        } else {
            seen.names
                .insert(name.value.clone(), (at.path_of("name"), name.line));
        }
    }
    let vrid = c.required(at, "vrid", raw.vrid, int_in::<u8>(1, 255));
    if let Some(vrid) = &vrid {
        if let Some((path, line)) = seen.vrids.get(&vrid.value) {
            let message = format!(
                "duplicate vrid {} on this interface; already used by {path}{} \
                 (each virtual router of an interface needs its own vrid)",
                vrid.value,
                at_line(*line)
            );
            c.error(at.path_of("vrid"), vrid.line, message);
        } else {
            seen.vrids
                .insert(vrid.value, (at.path_of("vrid"), vrid.line));
        }
    }
    let priority = c.required(at, "priority", raw.priority, |n: i64| {
        if n == 255 || n == 0 {
            return Err(format!(
                "expected an integer from 1 to 254, got {n} ({} is reserved by RFC 5798)",
                if n == 0 {
                    "0: a master leaving"
                } else {
                    "255: the address owner"
                }
            ));
        }
        int_in::<u8>(1, 254)(n)
    });
    let advert_interval = c.optional(
        at,
        "advert_interval",
        raw.advert_interval,
        DEFAULT_ADVERT_INTERVAL,
        |s| {
            let interval = duration(s)?;
            let ms = interval.as_millis();
            if interval.is_zero() || interval.as_nanos() % 10_000_000 != 0 {
                return Err(format!(
                    "expected a multiple of 10ms (adverts carry centiseconds), got {interval:?}"
                ));
            }
            if ms / 10 > MAX_ADVERT_CENTISECONDS {
                return Err(format!("expected at most 40950ms, got {interval:?}"));
            }
            Ok(interval)
        },
    );
    let preempt = c.optional(at, "preempt", raw.preempt, true, Ok);
    let virtual_ips = match raw.virtual_ips {
        Slot::Missing => {
            c.error(
                at.path_of("virtual_ips"),
                at.line,
                "missing required key `virtual_ips`, e.g. [\"198.18.0.100/24\"]",
            );
            None
        }
        Slot::Invalid => None,
        Slot::Set(field) if field.value.is_empty() => {
            c.error(
                at.path_of("virtual_ips"),
                field.line,
                "needs at least one address",
            );
            None
        }
        Slot::Set(field) => {
            let line = field.line;
            let path = at.path_of("virtual_ips");
            let valid = each(c, &path, field.value, cidr);
            for (i, (ip, _)) in valid.iter().flatten().enumerate() {
                if let Some((other, other_line)) = seen.vips.get(ip) {
                    let message = format!(
                        "{ip} is already a virtual IP of {other}{}; two groups \
                         holding one address take it from each other (for \
                         active-active, give each group its own VIP)",
                        at_line(*other_line)
                    );
                    c.error(format!("{path}[{i}]"), line, message);
                } else {
                    seen.vips.insert(*ip, (format!("{path}[{i}]"), line));
                }
            }
            valid
        }
    };
    let track_pools = match raw.track_pools {
        Slot::Missing => Some(Vec::new()),
        Slot::Invalid => None,
        Slot::Set(field) => each(
            c,
            &at.path_of("track_pools"),
            field.value,
            |name| match pools {
                Some(pools) if !pools.contains(&name) => Err(format!(
                    "names pool {name:?}, which is not defined; defined pools: {}",
                    pools.join(", ")
                )),
                _ => Ok(name),
            },
        ),
    };
    let notify = match raw.notify {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(field) => c
            .check(at.path_of("notify"), field, non_empty)
            .map(|f| Some(f.value)),
    };
    Some(VrrpInstance {
        name: name?.value,
        vrid: vrid?.value,
        priority: priority?.value,
        advert_interval: advert_interval?.value,
        preempt: preempt?.value,
        virtual_ips: virtual_ips?,
        track_pools: track_pools?,
        notify: notify?,
    })
}

/// `198.18.0.100/24`.
fn cidr(s: String) -> Result<(Ipv4Addr, u8), String> {
    let expected = || {
        format!("expected an IPv4 address with its prefix length such as \"198.18.0.100/24\", got {s:?}")
    };
    let Some((ip, prefix)) = s.split_once('/') else {
        return Err(format!("{} (the /prefix is missing)", expected()));
    };
    let ip: Ipv4Addr = ip.parse().map_err(|_| expected())?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(|| format!("{} (the prefix length is 1 to 32)", expected()))?;
    Ok((ip, prefix))
}

/// Checks every element of an array, each error at `path[i]`.
fn each<T>(
    c: &mut Checker,
    path: &str,
    raw: Vec<Slot<String>>,
    convert: impl Fn(String) -> Result<T, String>,
) -> Option<Vec<T>> {
    let mut valid = Some(Vec::new());
    for (i, slot) in raw.into_iter().enumerate() {
        let Slot::Set(field) = slot else {
            valid = None;
            continue;
        };
        match c.check(format!("{path}[{i}]"), field, &convert) {
            Some(field) => {
                if let Some(valid) = &mut valid {
                    valid.push(field.value);
                }
            }
            None => valid = None,
        }
    }
    valid
}

fn interfaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
