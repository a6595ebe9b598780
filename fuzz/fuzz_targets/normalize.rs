//! The normalisers an attacker's spelling goes through (SPEC 3.5): a
//! schedule and an image reference, on arbitrary text. Must never panic,
//! and each normal form must be a fixed point, or two spellings of one
//! value could compare unequal after normalisation.
#![no_main]

use cronwarden::engine::normalize::{
    min_interval, normalize_image, normalize_schedule, parse_existing_schedule, reference,
    same_schedule,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s = normalize_schedule(&text);
    assert_eq!(normalize_schedule(&s), s, "schedule normal form of {text:?}");
    if parse_existing_schedule(&text).is_ok() {
        assert!(same_schedule(&text, &s), "{text:?} differs from its normal form {s:?}");
        let _ = min_interval(&text);
    }
    let i = normalize_image(&text);
    assert_eq!(normalize_image(&i), i, "image normal form of {text:?}");
    if let Ok(r) = reference::parse_normalized(&text) {
        let _ = r.name();
    }
});
