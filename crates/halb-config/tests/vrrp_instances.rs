//! `[[vrrp.instance]]` groups side by side: the active-active layout (two
//! groups, each with its own VRID and VIP) is valid, and one VIP claimed by
//! two groups is an error naming both.

mod support;

use halb_config::parse;
use support::{assert_error, only_error, MINIMAL};

fn two_groups(vip_b: &str) -> String {
    format!(
        r#"{MINIMAL}
[vrrp]
interface = "lo"

[[vrrp.instance]]
name = "a"
vrid = 51
priority = 150
virtual_ips = ["198.18.0.100/24"]

[[vrrp.instance]]
name = "b"
vrid = 52
priority = 100
virtual_ips = ["198.18.0.102/24", "{vip_b}"]
"#
    )
}

#[test]
fn two_groups_with_their_own_vips_are_valid() {
    let config = parse(&two_groups("198.18.0.101/24")).unwrap();
    let vrrp = config.vrrp.unwrap();
    let vrids: Vec<u8> = vrrp.instances.iter().map(|i| i.vrid).collect();
    assert_eq!(vrids, [51, 52]);
    assert_eq!(vrrp.instances[1].virtual_ips.len(), 2);
}

#[test]
fn one_vip_in_two_groups_is_an_error_naming_both() {
    let error = only_error(&two_groups("198.18.0.100/32"));
    assert_error(
        &error,
        "vrrp.instance[1].virtual_ips[1]",
        Some(25),
        "198.18.0.100 is already a virtual IP of vrrp.instance[0].virtual_ips[0] (line 19)",
    );
}
