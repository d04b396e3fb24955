//! `[chaos]`: fault injection is off unless a node's file turns it on.

mod support;

use support::{assert_error, only_error, MINIMAL};

#[test]
fn chaos_is_off_by_default_and_on_when_allowed() {
    assert!(!halb_config::parse(MINIMAL).unwrap().chaos.allow);
    let allowed = format!("[chaos]\nallow = true\n{MINIMAL}");
    assert!(halb_config::parse(&allowed).unwrap().chaos.allow);
}

#[test]
fn bad_chaos_keys_name_their_path_and_line() {
    let error = only_error(&format!("[chaos]\nallow = \"yes\"\n{MINIMAL}"));
    assert_error(&error, "chaos.allow", Some(2), "boolean");
    let error = only_error(&format!("[chaos]\nallowed = true\n{MINIMAL}"));
    assert_error(&error, "chaos.allowed", Some(2), "unknown key");
}

#[test]
fn chaos_is_node_local() {
    let shared = format!("[chaos]\nallow = true\n{MINIMAL}");
    let errors = halb_config::parse_shared(&shared).unwrap_err().0;
    assert!(
        errors
            .iter()
            .any(|e| e.path == "chaos" && e.message.contains("node-local")),
        "{errors:#?}"
    );
}
