//! A workflow definition (YAML or JSON): `wisp_workflow::parse`, then
//! `validate` against a fixed catalog (functions named `h*` are wasi:http
//! components, `none*` don't exist, everything else is a command module
//! with default limits; versions 1 to 3).
//!
//! Invariants: never panics; a definition that parses survives its
//! canonical JSON form (serialise, parse again) unchanged and validates the
//! same way; a plan lists every step once, each after the steps it reads,
//! its output a valid index, its readers counted, and only lowers limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wisp_core::{Abi, Limits};
use wisp_workflow::{FunctionRef, Resolved, Source};

fn catalog(f: &FunctionRef) -> Result<Resolved, String> {
    if f.name.starts_with("none") || f.version.is_some_and(|v| v > 3) {
        return Err(format!("{f} not found"));
    }
    Ok(Resolved {
        version: f.version.unwrap_or(3),
        abi: if f.name.starts_with('h') { Abi::Http } else { Abi::Command },
        limits: Limits::default(),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(w) = wisp_workflow::parse(data) else {
        return;
    };
    let result = wisp_workflow::validate(&w, &catalog);
    let json = serde_json::to_vec(&w).expect("a parsed workflow serialises");
    let again = wisp_workflow::parse(&json).unwrap_or_else(|e| {
        panic!("canonical form does not parse: {e}: {}", String::from_utf8_lossy(&json))
    });
    assert_eq!(w, again, "the canonical form changed the workflow");
    assert_eq!(
        result.as_ref().map_err(|e| e.to_string()).err(),
        wisp_workflow::validate(&again, &catalog).map_err(|e| e.to_string()).err(),
        "the canonical form validates differently"
    );
    let Ok(plan) = result else { return };
    assert_eq!(plan.steps.len(), w.steps.len());
    assert!(plan.output < plan.steps.len());
    for s in &w.steps {
        assert_eq!(plan.steps.iter().filter(|p| p.name == s.name).count(), 1);
    }
    for (i, s) in plan.steps.iter().enumerate() {
        for inp in &s.inputs {
            if let Source::Step(j) = *inp {
                assert!(j < i, "step {} runs before its input {}", s.name, plan.steps[j].name);
            }
        }
        let readers = plan
            .steps
            .iter()
            .filter(|t| t.inputs.contains(&Source::Step(i)))
            .count()
            + usize::from(i == plan.output);
        assert_eq!(s.readers, readers, "readers of {}", s.name);
        let own = Limits::default();
        assert!(s.limits.timeout_ms <= own.timeout_ms);
        assert!(s.limits.memory_bytes <= own.memory_bytes);
        assert!(s.limits.max_response_bytes <= own.max_response_bytes);
        assert!(plan.ancestors(i)[i] == false, "step {} is its own ancestor", s.name);
    }
});
