//! A deploy's JSON config: `serde_json::from_slice::<FunctionConfig>` then
//! `validate()`.
//!
//! Invariants: never panics; a config that validates survives a round trip
//! (serialise, parse again) unchanged, and still validates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wisp_core::FunctionConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = serde_json::from_slice::<FunctionConfig>(data) else {
        return;
    };
    if config.validate().is_err() {
        return;
    }
    let json = serde_json::to_vec(&config).expect("a parsed config serialises");
    let again: FunctionConfig = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "re-serialised config does not parse: {e}: {}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(config, again, "round trip changed the config");
    assert!(again.validate().is_ok(), "round trip broke validation");
});
