#![no_main]
//! Any bytes a router (or anyone on the LAN) sends to the syslog port: parsing and classifying
//! must never panic, and the message never grows.

use libfuzzer_sys::fuzz_target;
use wanwatch::probe::syslog::{classify, parse};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let p = parse(&text);
    assert!(p.message.len() <= text.len());
    let _ = classify(p.app.as_deref(), &p.message);
});
