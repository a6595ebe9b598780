//! The audit line parser, classifier and evaluation of what a line holds:
//! whatever the bytes, no panic.
#![no_main]

use cronwarden::audit::offline::Auditor;
use cronwarden::engine::{Engine, Settings};
use cronwarden::manifest::Loaded;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let engine = Engine::new(Settings::default()).unwrap();
    let mut a = Auditor::new(&engine, Loaded::default());
    a.line("fuzz", 1, data);
});
