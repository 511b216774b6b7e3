//! Regression: a datastore copy keeps every top-level node. libyang 2.2.8's
//! lyd_dup_siblings drops the node that follows a top-level list, which
//! once lost the whole `vrrp` tree on commit after `remote-backup-service`
//! was added.

use hotlease::northbound::edit;
use hotlease::northbound::ops::EditOp;
use hotlease::xml;
use hotlease::yang::{self, WithDefaults};

fn config(body: &str) -> xml::Element {
    xml::parse(&format!(
        r#"<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">{body}</config>"#
    ))
    .unwrap()
}

#[test]
fn copies_keep_all_top_level_siblings() {
    let vrrp = config(
        r#"<vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>eth1</interface><vrid>1</vrid><virtual-ip>10.1.1.1</virtual-ip></group></vrrp>"#,
    );
    let rbs = config(
        r#"<remote-backup-service xmlns="urn:hotlease:yang:remote-backup"><name>rbs1</name><peer><address>10.0.0.2</address><source>10.0.0.1</source><port>7000</port></peer></remote-backup-service><remote-backup-service xmlns="urn:hotlease:yang:remote-backup"><name>rbs2</name><peer><address>10.0.0.6</address><source>10.0.0.5</source><port>7000</port></peer></remote-backup-service>"#,
    );
    let mut t = yang::empty();
    edit::apply(&mut t, &vrrp, EditOp::Merge, false, &mut Default::default()).unwrap();
    yang::validate(&mut t).unwrap();
    let mut c = yang::dup(&t);
    edit::apply(&mut c, &rbs, EditOp::Merge, false, &mut Default::default()).unwrap();
    let mut n = yang::dup(&c);
    yang::validate(&mut n).unwrap();
    let s = yang::print_xml(&yang::dup(&n), WithDefaults::Explicit);
    assert!(s.contains("<vrrp"), "{s}");
    assert!(s.contains("<name>rbs1</name>"), "{s}");
    assert!(s.contains("<name>rbs2</name>"), "{s}");
}

#[test]
fn validation_reports_every_violation() {
    let v = config(
        r#"<vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>eth1</interface><vrid>1</vrid><virtual-ip>10.1.1.1</virtual-ip><version>v2</version><advertise-interval>1500</advertise-interval></group><group><interface>eth1</interface><vrid>2</vrid><virtual-ip>10.1.1.2</virtual-ip><version>v2</version><advertise-interval>2500</advertise-interval></group></vrrp>"#,
    );
    let mut t = yang::empty();
    edit::apply(&mut t, &v, EditOp::Merge, false, &mut Default::default()).unwrap();
    let errs = yang::validate(&mut t).unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
}
