//! `[pool.sticky]` and `[cluster.peers]`.

mod support;

use std::time::Duration;

use halb_config::{parse, HashKey, StickyKind};
use support::{errors, only_error, MINIMAL};

fn with_sticky(keys: &str) -> String {
    format!("{MINIMAL}\n[pool.sticky]\n{keys}\n")
}

#[test]
fn sticky_kinds_and_their_defaults() {
    let config = parse(&with_sticky("kind = \"cookie\"")).unwrap();
    let sticky = config.pools[0].sticky.clone().unwrap();
    assert_eq!(
        sticky.kind,
        StickyKind::Cookie {
            name: "HALB".into()
        }
    );
    assert_eq!(sticky.secret, None);

    let config = parse(&with_sticky(
        "kind = \"table\"\nkey = \"header:X-User\"\nttl = \"5m\"\nsize = 1000",
    ))
    .unwrap();
    assert_eq!(
        config.pools[0].sticky.clone().unwrap().kind,
        StickyKind::Table {
            key: HashKey::Header("x-user".into()),
            ttl: Duration::from_secs(300),
            size: 1000
        }
    );
    let config = parse(&with_sticky("kind = \"table\"")).unwrap();
    let StickyKind::Table { key, ttl, size } = config.pools[0].sticky.clone().unwrap().kind else {
        panic!("a table");
    };
    assert_eq!(
        (key, ttl, size),
        (HashKey::ClientIp, Duration::from_secs(1800), 1_000_000)
    );
}

#[test]
fn sticky_mistakes_name_the_key() {
    let e = only_error(&with_sticky("kind = \"sesion\""));
    assert_eq!(e.path, "pool[0].sticky.kind", "{e}");
    let e = only_error(&with_sticky("kind = \"cookie\"\nttl = \"5m\""));
    assert_eq!(e.path, "pool[0].sticky.ttl", "{e}");
    assert!(e.message.contains("kind = \"table\""), "{e}");
    let e = only_error(&with_sticky("kind = \"table\"\nkey = \"path\""));
    assert_eq!(e.path, "pool[0].sticky.key", "{e}");
    let e = only_error(&with_sticky("kind = \"table\"\nsize = 0"));
    assert_eq!(e.path, "pool[0].sticky.size", "{e}");
    let e = only_error(&with_sticky("kind = \"cookie\"\nsecret = \"short\""));
    assert_eq!(e.path, "pool[0].sticky.secret", "{e}");
    let e = only_error(&with_sticky("kind = \"table\"\nwhat = 1"));
    assert_eq!(e.path, "pool[0].sticky.what", "{e}");
}

#[test]
fn peers_need_a_bind_and_a_long_secret() {
    let good = "[cluster.peers]\nbind = \"127.0.0.1:7400\"\npeers = [\"127.0.0.1:7401\", \"lb2.internal:7400\"]\nsecret = \"0123456789abcdef\"\n";
    let config = parse(&format!("{good}{MINIMAL}")).unwrap();
    let peers = config.cluster.unwrap().peers.unwrap();
    assert_eq!(peers.bind.to_string(), "127.0.0.1:7400");
    assert_eq!(peers.peers, ["127.0.0.1:7401", "lb2.internal:7400"]);
    let all = errors(&format!(
        "[cluster.peers]\nbind = \"nowhere\"\npeers = [\"x\", \"127.0.0.1:1\", \"127.0.0.1:1\"]\nsecret = \"short\"\n{MINIMAL}"
    ));
    let paths: Vec<&str> = all.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"cluster.peers.bind"), "{all:#?}");
    assert!(paths.contains(&"cluster.peers.secret"), "{all:#?}");
    assert!(paths.contains(&"cluster.peers.peers[0]"), "{all:#?}");
    assert!(paths.contains(&"cluster.peers.peers[2]"), "{all:#?}");
}
