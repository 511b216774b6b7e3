//! `yang::find_xpath` frees libyang's result set and `yang::print_xml`
//! libyang's output buffer: yang2 0.18's `find_xpath` and `print_string`
//! leak them on every call (found by the `netconf_rpc` fuzz target under
//! LeakSanitizer). A process of its own, so that the heap
//! figures are this test's alone.

#![allow(unsafe_code)]

use hotlease::yang;

/// Bytes in use on the C heap (glibc's allocator serves Rust and libyang).
fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    unsafe { libc::mallinfo2() }.uordblks
}

const XML: &str = r#"<dhcp-server xmlns="urn:hotlease:yang:dhcp-server"><ip-pool><name>p1</name><gateway>10.0.1.1</gateway><mask>255.255.255.0</mask><section><start>10.0.1.10</start><end>10.0.1.20</end></section></ip-pool><ip-pool><name>p2</name><gateway>10.0.2.1</gateway><mask>255.255.255.0</mask><section><start>10.0.2.10</start><end>10.0.2.20</end></section></ip-pool></dhcp-server>"#;

#[test]
fn find_xpath_does_not_leak() {
    let tree = yang::parse_config_xml(XML).unwrap();
    let path = "/hotlease-dhcp-server:dhcp-server/ip-pool";
    assert_eq!(yang::find_xpath(&tree, path).unwrap().len(), 2);
    assert!(yang::find_xpath(&tree, "/hotlease-dhcp-server:dhcp-server/[").is_err());
    // warm up (error buffers, hash tables), then 100,000 calls: the leak
    // was at least 32 bytes each (the set and its array of two nodes)
    for _ in 0..1000 {
        let _ = yang::find_xpath(&tree, path);
    }
    let before = heap_in_use();
    for _ in 0..100_000 {
        assert_eq!(yang::find_xpath(&tree, path).unwrap().len(), 2);
    }
    let grown = heap_in_use().saturating_sub(before);
    assert!(grown < 256 * 1024, "the heap grew by {grown} bytes");
}

#[test]
fn printing_does_not_leak() {
    let tree = yang::parse_config_xml(XML).unwrap();
    let wd = yang::WithDefaults::Explicit;
    let printed = yang::print_xml(&tree, wd);
    assert!(printed.contains("<name>p2</name>"), "{printed}");
    for _ in 0..1000 {
        let _ = yang::print_xml(&tree, wd);
    }
    let before = heap_in_use();
    for _ in 0..20_000 {
        assert_eq!(yang::print_xml(&tree, wd).len(), printed.len());
    }
    // the leak was the printed size (some 400 bytes) each time
    let grown = heap_in_use().saturating_sub(before);
    assert!(grown < 256 * 1024, "the heap grew by {grown} bytes");
}
