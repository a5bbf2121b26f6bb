//! The filter, attribute-path and PATCH-path grammar (RFC 7644 §3.4.2.2, §3.5.2) on any
//! text: parsing never panics, and whatever parses prints back to text that parses to the
//! same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_sidecar::scim::filter::{parse_attr_path, parse_filter, parse_patch_path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(f) = parse_filter(text) {
        let printed = f.to_string();
        assert_eq!(parse_filter(&printed).as_ref(), Ok(&f), "{printed}");
    }
    if let Ok(p) = parse_patch_path(text) {
        let printed = p.to_string();
        assert_eq!(parse_patch_path(&printed).as_ref(), Ok(&p), "{printed}");
    }
    let _ = parse_attr_path(text);
});
