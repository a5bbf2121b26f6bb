//! The config loader (`config::validate::from_str`) on any text: it parses, expands
//! `${VAR}`s and validates, and answers `Ok` or a list of problems, never a panic.
#![no_main]

use std::collections::HashMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use scim_sidecar::config::validate::from_str;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: HashMap<String, String> = [
        ("SCIM_TOKEN", "fuzz-token-0123456789abcdef"),
        ("EMPTY", ""),
        ("PORT", "8080"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let _ = from_str(text, "fuzz.toml".into(), Path::new("/nonexistent"), &env);
});
