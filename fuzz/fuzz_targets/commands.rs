//! The command-analysis entry points on arbitrary bytes: as a shell
//! script, as an argv (NUL-separated) and as a container's env value.
//! Must never panic and never hang (the analysis bounds its own work).
#![no_main]

use cronwarden::engine::analysis::{analyze_argv, analyze_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = analyze_line(&text);
    let argv: Vec<String> = text.split('\0').map(str::to_owned).collect();
    let env = vec![("X".to_owned(), Some(text.to_string()))];
    let _ = analyze_argv(&argv, &env, &["/host".to_owned()]);
});
