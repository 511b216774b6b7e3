//! Cost probe, not a test (ignored; BENCHMARKS.md): how long libyang takes to
//! parse and validate POOLS pools of bench/netconf's data, with the modules
//! read from YANG_DIR (default yang/), so that a rewritten `must` can be
//! measured without a rebuild:
//!
//!   POOLS=1000 cargo test --release --test validate_cost -- --ignored --nocapture
//!
//! Under `valgrind --tool=callgrind` the instruction count of
//! `lyd_validate_all` compares formulations independently of machine load.
use std::time::Instant;
use yang2::context::{Context, ContextFlags};
use yang2::data::{DataFormat, DataParserFlags, DataTree, DataValidationFlags};

fn pools(n: usize) -> String {
    let mut s = String::from(r#"<dhcp-server xmlns="urn:hotlease:yang:dhcp-server">"#);
    for i in 0..n {
        let net = format!("10.{}.{}", i / 256, i % 256);
        s += &format!("<ip-pool><name>pool-{i:04}</name><gateway>{net}.1</gateway><mask>255.255.255.0</mask><section><start>{net}.10</start><end>{net}.250</end></section><dns-server>{net}.2</dns-server><dns-server>{net}.3</dns-server><domain-name>pool{i}.bench.example</domain-name><lease-time>3600</lease-time></ip-pool>");
    }
    s + "</dhcp-server>"
}

#[test]
#[ignore]
fn validate_timing() {
    let env = |k: &str, d: usize| std::env::var(k).map(|v| v.parse().unwrap()).unwrap_or(d);
    let (n, reps) = (env("POOLS", 1000), env("REPS", 7));
    let dir = std::env::var("YANG_DIR").unwrap_or("yang".into());
    let mut ctx = Context::new(ContextFlags::NO_YANGLIBRARY).unwrap();
    ctx.set_searchdir(&dir).unwrap();
    ctx.set_searchdir(format!("{dir}/ietf")).unwrap();
    for m in [
        "hotlease-vrrp",
        "hotlease-remote-backup",
        "hotlease-dhcp-server",
    ] {
        ctx.load_module(m, None, &[]).unwrap();
    }
    let xml = format!("{}\0", pools(n));
    let mut times = vec![];
    for _ in 0..reps {
        let t0 = Instant::now();
        let mut t = DataTree::parse_string(
            &ctx,
            xml.as_bytes(),
            DataFormat::XML,
            DataParserFlags::NO_VALIDATION | DataParserFlags::STRICT,
            DataValidationFlags::empty(),
        )
        .unwrap();
        let t1 = Instant::now();
        t.validate(DataValidationFlags::NO_STATE).unwrap();
        let t2 = Instant::now();
        times.push(((t1 - t0).as_secs_f64() * 1e3, (t2 - t1).as_secs_f64() * 1e3));
    }
    times.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap());
    eprintln!(
        "parse {:.1} ms validate {:.1} ms (median), min validate {:.1}",
        times[reps / 2].0,
        times[reps / 2].1,
        times[0].1
    );
}
