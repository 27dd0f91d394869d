//! Validation: a [`Workflow`] and a [`Catalog`] of deployed functions become
//! a [`Plan`] (steps in an order that runs every input before its reader,
//! inputs as indices, effective limits), or an [`Invalid`] that names the
//! step at fault.
//!
//! Checked, in this order: the workflow's own fields; each step's name,
//! function reference, inputs and limits; cycles; the output and steps that
//! lead nowhere ("unreachable": their output would be thrown away); then,
//! against the catalog, that each function exists, that its kind (command
//! module or `wasi:http` component) is what the step expects and what its
//! streaming needs, and that the step's limits only tighten the function's.

use crate::Invalid;
use crate::def::{INPUT, Merge, Step, StepLimits, Workflow};
use std::collections::HashMap;
use std::time::Duration;
use wisp_core::{Abi, BOUNDS, Limits};

/// Most steps in one workflow.
pub const MAX_STEPS: usize = 100;
/// Most inputs of one step.
pub const MAX_INPUTS: usize = 32;
/// Longest a workflow may run: 15 min (the longest a function may).
pub const MAX_TIMEOUT_MS: u64 = 15 * 60 * 1000;

/// A function as a step names it. The one reference type every resolver
/// takes, so a change of how functions are found (namespaces) is made in
/// one place.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FunctionRef {
    /// Function name.
    pub name: String,
    /// A pinned version.
    pub version: Option<u32>,
    /// A pinned module digest (`sha256:<hex>`).
    pub digest: Option<String>,
}

impl std::fmt::Display for FunctionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "function {:?}", self.name)?;
        if let Some(v) = self.version {
            write!(f, " version {v}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, " with digest {d}")?;
        }
        Ok(())
    }
}

/// What validation needs to know of a deployed function version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The version a call would run.
    pub version: u32,
    /// Its kind.
    pub abi: Abi,
    /// Its own limits.
    pub limits: Limits,
}

/// Where functions are looked up.
pub trait Catalog {
    /// The version `f` names, or why there is none (a message that names
    /// the function).
    fn resolve(&self, f: &FunctionRef) -> Result<Resolved, String>;
}

impl<F: Fn(&FunctionRef) -> Result<Resolved, String>> Catalog for F {
    fn resolve(&self, f: &FunctionRef) -> Result<Resolved, String> {
        self(f)
    }
}

/// Where a step's input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The workflow's input.
    Input,
    /// The output of the step at this index of [`Plan::steps`].
    Step(usize),
}

/// A validated step.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    /// Its name.
    pub name: String,
    /// The function it calls.
    pub function: FunctionRef,
    /// The version resolved when the plan was made.
    pub resolved: Resolved,
    /// The limits the step runs under: the function's, lowered by the
    /// step's own.
    pub limits: Limits,
    /// Its inputs, in the order listed.
    pub inputs: Vec<Source>,
    /// How several inputs are merged.
    pub merge: Merge,
    /// `QUERY_STRING`.
    pub query: String,
    /// `PATH_INFO`.
    pub path: String,
    /// Reads its one input step's body as it streams.
    pub stream: bool,
    /// How many readers its output has: the steps that take it as an input
    /// (once per listing), plus one if it is the workflow's output.
    pub readers: usize,
}

/// A workflow ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The whole run's budget.
    pub timeout: Duration,
    /// Every step, each after all the steps it reads (stable: declaration
    /// order among independent steps).
    pub steps: Vec<PlannedStep>,
    /// Index of the step whose output is the answer.
    pub output: usize,
}

impl Plan {
    /// Whether any step reads the workflow's input.
    pub fn reads_input(&self) -> bool {
        self.steps.iter().any(|s| s.inputs.contains(&Source::Input))
    }

    /// The largest workflow input every step that reads it accepts: the
    /// smallest `max_body_bytes` among them (0 if none reads it).
    pub fn max_input_bytes(&self) -> u64 {
        self.max_read_bytes(Source::Input)
    }

    /// The largest body every reader of `src` accepts (0 if none reads it).
    pub fn max_read_bytes(&self, src: Source) -> u64 {
        self.steps
            .iter()
            .filter(|s| s.inputs.contains(&src))
            .map(|s| s.limits.max_body_bytes)
            .min()
            .unwrap_or(0)
    }

    /// The index of a step by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    /// The steps whose outputs lead to step `i` (not including `i`).
    pub fn ancestors(&self, i: usize) -> Vec<bool> {
        let mut seen = vec![false; self.steps.len()];
        let mut stack = vec![i];
        while let Some(j) = stack.pop() {
            for s in &self.steps[j].inputs {
                if let Source::Step(k) = *s
                    && !seen[k]
                {
                    seen[k] = true;
                    stack.push(k);
                }
            }
        }
        seen
    }
}

/// Check `w` against `catalog` and plan it.
pub fn validate(w: &Workflow, catalog: &dyn Catalog) -> Result<Plan, Invalid> {
    if !(1..=MAX_TIMEOUT_MS).contains(&w.timeout_ms) {
        return Err(Invalid::workflow(format!(
            "timeout_ms must be between 1 and {MAX_TIMEOUT_MS}, got {}",
            w.timeout_ms
        )));
    }
    if w.steps.is_empty() {
        return Err(Invalid::workflow("a workflow needs at least one step"));
    }
    if w.steps.len() > MAX_STEPS {
        return Err(Invalid::workflow(format!(
            "{} steps; the limit is {MAX_STEPS}",
            w.steps.len()
        )));
    }
    if let Some(d) = &w.description
        && d.len() > 4096
    {
        return Err(Invalid::workflow("description is longer than 4096 bytes"));
    }
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, s) in w.steps.iter().enumerate() {
        wisp_core::validate_name(&s.name)
            .map_err(|m| Invalid::step(&s.name, m.replacen("function name", "step name", 1)))?;
        if by_name.insert(&s.name, i).is_some() {
            return Err(Invalid::step(&s.name, "two steps have this name"));
        }
    }
    for s in &w.steps {
        check_step_fields(s, w.timeout_ms)?;
        let mut seen: Vec<&str> = Vec::new();
        for inp in &s.inputs {
            if inp != INPUT && !by_name.contains_key(inp.as_str()) {
                return Err(Invalid::step(
                    &s.name,
                    format!("input {inp:?} is neither {INPUT} nor a step of this workflow"),
                ));
            }
            if *inp == s.name {
                return Err(Invalid::step(&s.name, "a step can't read its own output"));
            }
            if seen.contains(&inp.as_str()) {
                return Err(Invalid::step(
                    &s.name,
                    format!("input {inp:?} is listed twice"),
                ));
            }
            seen.push(inp);
        }
    }

    let order = topological_order(w, &by_name)?;

    // The output, and steps that lead nowhere.
    let mut read = vec![false; w.steps.len()];
    for s in &w.steps {
        for inp in &s.inputs {
            if let Some(&j) = by_name.get(inp.as_str()) {
                read[j] = true;
            }
        }
    }
    let output = match &w.output {
        Some(o) => *by_name.get(o.as_str()).ok_or_else(|| {
            Invalid::workflow(format!("output {o:?} is not a step of this workflow"))
        })?,
        None => {
            let ends: Vec<&str> = w
                .steps
                .iter()
                .zip(&read)
                .filter(|(_, r)| !**r)
                .map(|(s, _)| s.name.as_str())
                .collect();
            match ends.as_slice() {
                [one] => by_name[one],
                _ => {
                    return Err(Invalid::workflow(format!(
                        "no step reads the output of {}: name the answer with `output` \
                         (the others would be unreachable), or merge them in a final step",
                        quoted_list(&ends)
                    )));
                }
            }
        }
    };
    // Everything must lead to the output.
    let mut useful = vec![false; w.steps.len()];
    useful[output] = true;
    let mut stack = vec![output];
    while let Some(j) = stack.pop() {
        for inp in &w.steps[j].inputs {
            if let Some(&k) = by_name.get(inp.as_str())
                && !useful[k]
            {
                useful[k] = true;
                stack.push(k);
            }
        }
    }
    if let Some(k) = (0..w.steps.len()).find(|&k| !useful[k]) {
        let out = &w.steps[output].name;
        return Err(Invalid::step(
            &w.steps[k].name,
            format!("unreachable: its output never leads to the workflow's output (step {out:?})"),
        ));
    }

    // Against the catalog.
    let mut resolved = Vec::with_capacity(w.steps.len());
    for s in &w.steps {
        let f = FunctionRef {
            name: s.function.clone(),
            version: s.version,
            digest: s.digest.clone(),
        };
        let r = catalog.resolve(&f).map_err(|m| Invalid::step(&s.name, m))?;
        if let Some(want) = s.abi
            && want != r.abi
        {
            return Err(Invalid::step(
                &s.name,
                format!(
                    "expects {} but {f} (v{}) is {}",
                    abi_phrase(want),
                    r.version,
                    abi_phrase(r.abi)
                ),
            ));
        }
        let limits = effective_limits(s, &r.limits).map_err(|m| {
            Invalid::step(
                &s.name,
                format!("{m} of {f} (a step can only lower a function's limits)"),
            )
        })?;
        resolved.push((f, r, limits));
    }
    for (i, s) in w.steps.iter().enumerate() {
        if !s.stream {
            continue;
        }
        let producer = match s.inputs.as_slice() {
            [one] if one != INPUT => by_name[one.as_str()],
            _ => {
                return Err(Invalid::step(
                    &s.name,
                    "stream: true needs exactly one input, and it must be a step",
                ));
            }
        };
        let p = &w.steps[producer];
        for (who, j) in [(&s.name, i), (&p.name, producer)] {
            if resolved[j].1.abi != Abi::Http {
                return Err(Invalid::step(
                    &s.name,
                    format!(
                        "stream: true needs wasi:http components at both ends, but step {who:?} \
                         runs {} (v{}), {}",
                        resolved[j].0,
                        resolved[j].1.version,
                        abi_phrase(resolved[j].1.abi)
                    ),
                ));
            }
        }
        let other_readers = w
            .steps
            .iter()
            .filter(|t| t.name != s.name && t.inputs.contains(&p.name))
            .count();
        if other_readers > 0 || producer == output {
            return Err(Invalid::step(
                &s.name,
                format!(
                    "stream: true needs step {:?} to have one reader, but its output is also {}",
                    p.name,
                    if producer == output {
                        "the workflow's output"
                    } else {
                        "read by another step"
                    }
                ),
            ));
        }
    }

    // The plan, in execution order.
    let mut position = vec![0usize; w.steps.len()];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos;
    }
    let mut resolved: Vec<Option<(FunctionRef, Resolved, Limits)>> =
        resolved.into_iter().map(Some).collect();
    let mut steps = Vec::with_capacity(order.len());
    for &i in &order {
        let s = &w.steps[i];
        let (function, r, limits) = resolved[i].take().expect("each step once");
        let inputs = s
            .inputs
            .iter()
            .map(|inp| match by_name.get(inp.as_str()) {
                Some(&j) => Source::Step(position[j]),
                None => Source::Input,
            })
            .collect();
        let readers = w
            .steps
            .iter()
            .filter(|t| t.inputs.contains(&s.name))
            .count()
            + usize::from(i == output);
        steps.push(PlannedStep {
            name: s.name.clone(),
            function,
            resolved: r,
            limits,
            inputs,
            merge: s.merge,
            query: s.query.clone(),
            path: s.path.clone(),
            stream: s.stream,
            readers,
        });
    }
    Ok(Plan {
        timeout: Duration::from_millis(w.timeout_ms),
        steps,
        output: position[output],
    })
}

fn abi_phrase(a: Abi) -> &'static str {
    match a {
        Abi::Command => "a command module",
        Abi::Http => "a wasi:http component",
    }
}

fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a step can check without the catalog.
fn check_step_fields(s: &Step, workflow_timeout: u64) -> Result<(), Invalid> {
    let bad = |m: String| Invalid::step(&s.name, m);
    wisp_core::validate_name(&s.function).map_err(bad)?;
    if s.version.is_some() && s.digest.is_some() {
        return Err(bad("pin a version or a digest, not both".into()));
    }
    if s.version == Some(0) {
        return Err(bad("versions start at 1".into()));
    }
    if let Some(d) = &s.digest {
        let hex = d.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad(format!(
                "digest {d:?} is not sha256: followed by 64 lower-case hex digits"
            )));
        }
    }
    if s.inputs.len() > MAX_INPUTS {
        return Err(bad(format!(
            "{} inputs; the limit is {MAX_INPUTS}",
            s.inputs.len()
        )));
    }
    if !s.path.is_empty() && !s.path.starts_with('/') {
        return Err(bad(format!(
            "path {:?} must be empty or start with /",
            s.path
        )));
    }
    for (what, v) in [("path", &s.path), ("query", &s.query)] {
        if v.len() > 4096
            || v.bytes()
                .any(|b| b.is_ascii_control() || b == b' ' || b == b'#')
        {
            return Err(bad(format!(
                "{what} {v:?} may hold no spaces, '#' or control characters and at most 4096 bytes"
            )));
        }
    }
    if s.query.contains('?') && s.query.starts_with('?') {
        return Err(bad("query is written without the leading '?'".into()));
    }
    let l = &s.limits;
    for (field, v) in [
        ("timeout_ms", l.timeout_ms),
        ("memory_bytes", l.memory_bytes),
        ("max_response_bytes", l.max_response_bytes),
    ] {
        let Some(v) = v else { continue };
        let b = BOUNDS.iter().find(|b| b.field == field).expect("a bound");
        if v < b.min || v > b.max {
            return Err(bad(format!(
                "limits.{field} must be between {} and {}, got {v}",
                b.min, b.max
            )));
        }
    }
    if let Some(t) = l.timeout_ms
        && t > workflow_timeout
    {
        return Err(bad(format!(
            "limits.timeout_ms {t} is longer than the workflow's timeout_ms {workflow_timeout}"
        )));
    }
    Ok(())
}

/// The function's limits, lowered by the step's; an error names a limit the
/// step would raise.
fn effective_limits(s: &Step, own: &Limits) -> Result<Limits, String> {
    let mut l = own.clone();
    let StepLimits {
        timeout_ms,
        memory_bytes,
        max_response_bytes,
    } = &s.limits;
    for (field, want, have) in [
        ("timeout_ms", *timeout_ms, &mut l.timeout_ms),
        ("memory_bytes", *memory_bytes, &mut l.memory_bytes),
        (
            "max_response_bytes",
            *max_response_bytes,
            &mut l.max_response_bytes,
        ),
    ] {
        if let Some(w) = want {
            if w > *have {
                return Err(format!("limits.{field} {w} is above the limit {have}"));
            }
            *have = w;
        }
    }
    Ok(l)
}

/// Kahn's algorithm, taking the lowest declaration index among the ready
/// steps, so independent steps keep their written order. A cycle is an
/// error that spells it out.
fn topological_order(w: &Workflow, by_name: &HashMap<&str, usize>) -> Result<Vec<usize>, Invalid> {
    let n = w.steps.len();
    let mut pending = vec![0usize; n];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, s) in w.steps.iter().enumerate() {
        for inp in &s.inputs {
            if let Some(&j) = by_name.get(inp.as_str()) {
                pending[i] += 1;
                readers[j].push(i);
            }
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &r in &readers[i] {
            pending[r] -= 1;
            if pending[r] == 0 {
                ready.insert(r);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk back along unfinished inputs from the first stuck step until a
    // step repeats: that stretch is a cycle.
    let start = (0..n).find(|&i| pending[i] > 0).expect("a stuck step");
    let mut path = vec![start];
    let mut at = start;
    loop {
        let next = w.steps[at]
            .inputs
            .iter()
            .filter_map(|inp| by_name.get(inp.as_str()).copied())
            .find(|&j| pending[j] > 0)
            .expect("a stuck step has a stuck input");
        if let Some(p) = path.iter().position(|&x| x == next) {
            let mut cycle: Vec<&str> = path[p..]
                .iter()
                .map(|&k| w.steps[k].name.as_str())
                .collect();
            // Walked against the data flow; turn it around, starting where
            // the walk did.
            cycle.reverse();
            cycle.rotate_right(1);
            cycle.push(cycle[0]);
            return Err(Invalid::step(
                cycle[0],
                format!("is part of a cycle: {}", cycle.join(" -> ")),
            ));
        }
        path.push(next);
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::def::parse;

    /// Functions `cmd*` are command modules, `http*` components, v1..=3 of
    /// each; `small` has a 1 s timeout and 1 MiB of memory.
    fn catalog(f: &FunctionRef) -> Result<Resolved, String> {
        if f.name == "missing" {
            return Err(format!("{f} not found"));
        }
        if let Some(v) = f.version
            && v > 3
        {
            return Err(format!("{f} not found: it has versions 1 to 3"));
        }
        let mut limits = Limits::default();
        if f.name == "small" {
            limits.timeout_ms = 1000;
            limits.memory_bytes = 1 << 20;
        }
        Ok(Resolved {
            version: f.version.unwrap_or(3),
            abi: if f.name.starts_with("http") {
                Abi::Http
            } else {
                Abi::Command
            },
            limits,
        })
    }

    fn plan(yaml: &str) -> Result<Plan, Invalid> {
        validate(&parse(yaml.as_bytes()).expect("parses"), &catalog)
    }

    fn err(yaml: &str) -> String {
        plan(yaml).expect_err("invalid").to_string()
    }

    #[test]
    fn a_diamond_runs_inputs_first_and_counts_readers() {
        let p = plan(
            "steps:
  - {name: sum, function: cmd, inputs: [left, right]}
  - {name: right, function: cmd, inputs: src}
  - {name: left, function: cmd, inputs: src}
  - {name: src, function: cmd}
",
        )
        .unwrap();
        let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["src", "right", "left", "sum"]);
        assert_eq!(p.output, 3);
        assert_eq!(p.steps[0].inputs, [Source::Input]);
        assert_eq!(p.steps[0].readers, 2);
        assert_eq!(p.steps[3].inputs, [Source::Step(2), Source::Step(1)]);
        assert_eq!(p.steps[3].readers, 1, "the output counts as a reader");
        assert!(p.reads_input());
        assert_eq!(p.max_input_bytes(), Limits::default().max_body_bytes);
        assert_eq!(p.ancestors(3), [true, true, true, false]);
    }

    #[test]
    fn unknown_functions_and_versions_name_the_step() {
        assert_eq!(
            err("steps: [{name: a, function: missing}]"),
            r#"step "a": function "missing" not found"#
        );
        assert_eq!(
            err("steps: [{name: a, function: cmd, version: 9}]"),
            r#"step "a": function "cmd" version 9 not found: it has versions 1 to 3"#
        );
        assert_eq!(
            err("steps: [{name: a, function: cmd, version: 1, digest: 'sha256:00'}]"),
            r#"step "a": pin a version or a digest, not both"#
        );
        assert!(
            err("steps: [{name: a, function: cmd, digest: 'sha256:XY'}]")
                .contains("64 lower-case hex")
        );
        assert!(
            err("steps: [{name: a, function: 'bad name'}]")
                .starts_with("step \"a\": invalid function name")
        );
        assert!(err("steps: [{name: '-x', function: cmd}]").contains("invalid step name"));
    }

    #[test]
    fn cycles_are_spelled_out() {
        let e = err("steps:
  - {name: a, function: cmd}
  - {name: b, function: cmd, inputs: [a, d]}
  - {name: c, function: cmd, inputs: b}
  - {name: d, function: cmd, inputs: c}
  - {name: e, function: cmd, inputs: d}
");
        assert_eq!(e, r#"step "b": is part of a cycle: b -> c -> d -> b"#);
        assert_eq!(
            err("steps: [{name: a, function: cmd, inputs: a}]"),
            r#"step "a": a step can't read its own output"#
        );
    }

    #[test]
    fn steps_that_lead_nowhere_are_unreachable() {
        let e = err("steps:
  - {name: a, function: cmd}
  - {name: b, function: cmd, inputs: a}
  - {name: stray, function: cmd, inputs: a}
");
        assert!(e.contains(r#""b", "stray""#) && e.contains("output"), "{e}");
        let e = err("steps:
  - {name: a, function: cmd}
  - {name: b, function: cmd, inputs: a}
  - {name: stray, function: cmd, inputs: a}
output: b
");
        assert_eq!(
            e,
            r#"step "stray": unreachable: its output never leads to the workflow's output (step "b")"#
        );
        assert!(err("steps: [{name: a, function: cmd}]\noutput: z").contains(r#"output "z""#));
        assert!(err("steps: [{name: a, function: cmd, inputs: nope}]").contains(r#"input "nope""#));
    }

    #[test]
    fn command_modules_and_components_are_told_apart() {
        assert_eq!(
            err("steps: [{name: a, function: http1, abi: command}]"),
            r#"step "a": expects a command module but function "http1" (v3) is a wasi:http component"#
        );
        assert!(plan("steps: [{name: a, function: http1, abi: http}]").is_ok());
        let streamed = "steps:
  - {name: a, function: PRODUCER}
  - {name: b, function: CONSUMER, inputs: a, stream: true}
";
        let p = plan(
            &streamed
                .replace("PRODUCER", "http1")
                .replace("CONSUMER", "http2"),
        )
        .unwrap();
        assert!(p.steps[1].stream);
        let e = err(&streamed
            .replace("PRODUCER", "cmd")
            .replace("CONSUMER", "http2"));
        assert_eq!(
            e,
            r#"step "b": stream: true needs wasi:http components at both ends, but step "a" runs function "cmd" (v3), a command module"#
        );
        let e = err(&streamed
            .replace("PRODUCER", "http1")
            .replace("CONSUMER", "cmd"));
        assert!(e.contains(r#"but step "b" runs function "cmd""#), "{e}");
        let e = err("steps:
  - {name: a, function: http1}
  - {name: b, function: http2, inputs: a, stream: true}
  - {name: c, function: http2, inputs: [a, b]}
");
        assert!(e.contains("one reader"), "{e}");
        assert!(
            err("steps: [{name: a, function: http1, stream: true}]").contains("must be a step")
        );
    }

    #[test]
    fn limits_are_bounded_and_only_tighten() {
        let p = plan("steps: [{name: a, function: small, limits: {timeout_ms: 500}}]").unwrap();
        assert_eq!(p.steps[0].limits.timeout_ms, 500);
        assert_eq!(p.steps[0].limits.memory_bytes, 1 << 20);
        assert_eq!(
            err("steps: [{name: a, function: small, limits: {memory_bytes: 2MiB}}]"),
            r#"step "a": limits.memory_bytes 2097152 is above the limit 1048576 of function "small" (a step can only lower a function's limits)"#
        );
        assert_eq!(
            err("steps: [{name: a, function: cmd, limits: {memory_bytes: 1000}}]"),
            r#"step "a": limits.memory_bytes must be between 65536 and 4294967296, got 1000"#
        );
        assert!(
            err("timeout_ms: 100\nsteps: [{name: a, function: cmd, limits: {timeout_ms: 200}}]")
                .contains("longer than the workflow's")
        );
        assert!(
            err("timeout_ms: 0\nsteps: [{name: a, function: cmd}]").contains("timeout_ms must be")
        );
        assert!(err("steps: []").contains("at least one step"));
    }

    #[test]
    fn names_inputs_and_request_fields_are_checked() {
        assert!(
            err("steps: [{name: a, function: cmd}, {name: a, function: cmd}]")
                .contains("two steps")
        );
        assert!(
            err("steps: [{name: a, function: cmd, inputs: ['$input', '$input']}]")
                .contains("listed twice")
        );
        assert!(err("steps: [{name: a, function: cmd, path: x}]").contains("start with /"));
        assert!(err("steps: [{name: a, function: cmd, query: 'a b'}]").contains("no spaces"));
        let many: Vec<String> = (0..=MAX_STEPS)
            .map(|i| format!("{{name: s{i}, function: cmd}}"))
            .collect();
        assert!(err(&format!("steps: [{}]", many.join(","))).contains("the limit is 100"));
        let p = plan("steps: [{name: a, function: cmd, inputs: []}]").unwrap();
        assert!(!p.reads_input());
        assert_eq!(p.max_input_bytes(), 0);
    }
}
