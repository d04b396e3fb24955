use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;

use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn specs(ports: &[u16], checked: bool) -> Vec<MemberSpec> {
    ports
        .iter()
        .map(|&port| MemberSpec {
            address: addr(port),
            weight: 1,
            checked,
        })
        .collect()
}

fn drain(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        match events.try_recv() {
            Ok(event) => seen.push(event),
            Err(TryRecvError::Empty) => return seen,
            Err(e) => panic!("{e}"),
        }
    }
}

fn verdict(up: bool) -> Change {
    Change::Verdict {
        up,
        detail: if up { "passed" } else { "failed: refused" }.to_owned(),
    }
}

#[test]
fn members_keep_their_health_across_changes() {
    let state = State::new();
    let first = state.set_members("app", &specs(&[1, 2], true));
    let mut events = state.subscribe();
    let second = state.set_members("app", &specs(&[2, 3], true));
    assert!(Arc::ptr_eq(&first[1], &second[0]), "backend 2 kept");
    assert_eq!(second[1].check_state(), CheckState::Pending, "3 is new");
    let kinds: Vec<_> = drain(&mut events)
        .into_iter()
        .map(|e| match e {
            Event::BackendAdded { backend, .. } => format!("added {}", backend.port()),
            Event::BackendRemoved { backend, .. } => format!("removed {}", backend.port()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["added 3", "removed 1"]);
    assert!(state.health("app", addr(1)).is_err(), "1 left the state");
}

#[test]
fn verdicts_publish_once_and_pool_usability_follows() {
    let state = State::new();
    state.set_members("app", &specs(&[1, 2], true));
    assert_eq!(state.pool_usable("app"), Some(false), "pending backends");
    let mut events = state.subscribe();
    let apply = |port, change| state.apply("app", addr(port), Origin::Check, change);

    assert_eq!(apply(1, verdict(true)), Ok(Applied::Changed));
    assert_eq!(apply(1, verdict(true)), Ok(Applied::Unchanged));
    assert_eq!(apply(2, verdict(true)), Ok(Applied::Changed));
    assert_eq!(apply(1, verdict(false)), Ok(Applied::Changed));
    assert_eq!(apply(2, verdict(false)), Ok(Applied::Changed));
    let seen = drain(&mut events);
    let usable: Vec<bool> = seen
        .iter()
        .filter_map(|e| match e {
            Event::PoolUsable { usable, .. } => Some(*usable),
            _ => None,
        })
        .collect();
    assert_eq!(usable, [true, false]);
    assert_eq!(
        seen.len(),
        6,
        "four verdicts and two pool changes: {seen:?}"
    );
    match &seen[0] {
        Event::Verdict {
            up,
            origin,
            generation,
            ..
        } => {
            assert!(*up);
            assert_eq!(*origin, Origin::Check);
            assert_eq!(*generation, 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(state.pool_usable("app"), Some(false));
}

#[test]
fn disabling_every_backend_makes_the_pool_unusable() {
    let state = State::new();
    state.set_members("app", &specs(&[1], false));
    assert_eq!(state.pool_usable("app"), Some(true), "unchecked: up");
    let applied = state.apply(
        "app",
        addr(1),
        Origin::Operator,
        Change::Admin(AdminState::Disabled),
    );
    assert_eq!(
        applied,
        Ok(Applied::Admin {
            previous: AdminState::Enabled
        })
    );
    assert_eq!(state.pool_usable("app"), Some(false));
    let zero = [MemberSpec {
        address: addr(1),
        weight: 0,
        checked: false,
    }];
    state
        .apply(
            "app",
            addr(1),
            Origin::Operator,
            Change::Admin(AdminState::Enabled),
        )
        .unwrap();
    state.set_members("app", &zero);
    assert_eq!(state.pool_usable("app"), Some(false), "weight 0");
}

#[test]
fn ejections_respect_the_pool_share() {
    let state = State::new();
    state.set_members("app", &specs(&[1, 2, 3, 4], false));
    let eject = |port| {
        state.apply(
            "app",
            addr(port),
            Origin::Outlier,
            Change::Eject {
                failures: 5,
                base: Duration::from_secs(30),
                max: Duration::from_secs(300),
                max_percent: 50,
            },
        )
    };
    assert_eq!(eject(1), Ok(Applied::Ejected(Duration::from_secs(30))));
    assert_eq!(eject(1), Ok(Applied::NotEjected), "already ejected");
    assert_eq!(eject(2), Ok(Applied::Ejected(Duration::from_secs(30))));
    assert_eq!(eject(3), Ok(Applied::NotEjected), "half the pool is out");
    assert_eq!(state.pool_usable("app"), Some(true), "ejections aside");
}

#[test]
fn unknown_targets_are_refused_by_name() {
    let state = State::new();
    state.set_members("app", &specs(&[1], false));
    let err = state
        .apply("api", addr(1), Origin::Operator, verdict(true))
        .unwrap_err();
    assert_eq!(err.to_string(), "no pool named \"api\"");
    let err = state
        .apply("app", addr(9), Origin::Operator, verdict(true))
        .unwrap_err();
    assert_eq!(err.to_string(), "pool \"app\" has no backend 127.0.0.1:9");
}

#[test]
fn events_serialise_with_words_and_wall_clock_times() {
    let state = State::new();
    state.set_members("app", &specs(&[1], false));
    let mut events = state.subscribe();
    state
        .apply(
            "app",
            addr(1),
            Origin::Operator,
            Change::Admin(AdminState::Draining),
        )
        .unwrap();
    let event = drain(&mut events).remove(0);
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["kind"], "admin");
    assert_eq!(json["from"], "enabled");
    assert_eq!(json["to"], "draining");
    assert_eq!(json["origin"], "operator");
    assert_eq!(json["backend"], "127.0.0.1:1");
    let at = json["at_ms"].as_u64().unwrap();
    assert!(at.abs_diff(unix_ms()) < 60_000, "a wall-clock time");
}
