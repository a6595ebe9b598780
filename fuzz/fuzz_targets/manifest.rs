//! `cronwarden scan` on an arbitrary file: YAML splitting and parsing, the
//! object checks and the whole engine. Bad input must become an error that
//! names the document, never a panic.
#![no_main]

use cronwarden::engine::{Engine, Settings};
use cronwarden::manifest::Loaded;
use cronwarden::scan::scan_loaded;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let engine = Engine::new(Settings::default()).expect("default settings");
    let mut loaded = Loaded::default();
    loaded.add_text("fuzz.yaml", &text);
    let _ = scan_loaded(&engine, loaded);
});
