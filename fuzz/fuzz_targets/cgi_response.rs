//! `parse_cgi_response` on arbitrary guest stdout.
//!
//! Invariants: never panics; the body is a suffix of the input; the status
//! is in 100..=999; no `Status` header (in any case) is passed on.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wisp_core::cgi::parse_cgi_response;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let r = parse_cgi_response(input.clone());
    assert!(
        input.ends_with(&r.body),
        "body is not a suffix of the input: {r:?}"
    );
    assert!((100..=999).contains(&r.status), "status {}", r.status);
    for (k, _) in &r.headers {
        assert!(
            !k.eq_ignore_ascii_case("status"),
            "Status header passed on: {r:?}"
        );
    }
    if r.body.len() < input.len() {
        // A header block was recognised: it ended in an empty line, and
        // every name is a token.
        let head = &input[..input.len() - r.body.len()];
        assert!(head.ends_with(b"\n"), "header block without its end: {r:?}");
        for (k, v) in &r.headers {
            assert!(
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "header name {k:?}"
            );
            assert!(!v.contains('\n'), "header value spans lines: {v:?}");
        }
    }
});
