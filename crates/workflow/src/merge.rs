//! Fan-in: how a step with several inputs gets one request body. The
//! browser runner (`web/src/workflow.js`) implements the same rules, and the
//! browser tests compare the two byte for byte.

use crate::def::Merge;

/// One input of a step: its name (`$input` or the step's), bytes and
/// content type.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// `$input` or the producing step's name.
    pub name: &'a str,
    /// The bytes.
    pub bytes: &'a [u8],
    /// The producer's `Content-Type`, if it said one.
    pub content_type: Option<&'a str>,
}

/// A merged body and its content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The body.
    pub body: Vec<u8>,
    /// Its content type, if one applies.
    pub content_type: Option<String>,
}

/// JSON's insignificant whitespace.
fn trim_json_ws(b: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |e| e + 1);
    &b[start..end]
}

/// Merge `parts` by `rule`:
/// - `concat`: the bytes one after the other; the content type is the
///   parts' common one, or none if they differ;
/// - `json`: `{"<name>":<json>,...}` in the order given, each value the
///   part's JSON text as produced (whitespace around it trimmed), content
///   type `application/json`. A part that is not JSON is an error naming
///   it.
pub fn merge(rule: Merge, parts: &[Part<'_>]) -> Result<Merged, String> {
    match rule {
        Merge::Concat => {
            let mut body = Vec::with_capacity(parts.iter().map(|p| p.bytes.len()).sum());
            for p in parts {
                body.extend_from_slice(p.bytes);
            }
            let first = parts.first().and_then(|p| p.content_type);
            let common = parts.iter().all(|p| p.content_type == first);
            Ok(Merged {
                body,
                content_type: if common {
                    first.map(str::to_string)
                } else {
                    None
                },
            })
        }
        Merge::Json => {
            let mut body = Vec::with_capacity(
                2 + parts
                    .iter()
                    .map(|p| p.bytes.len() + p.name.len() + 4)
                    .sum::<usize>(),
            );
            body.push(b'{');
            for (i, p) in parts.iter().enumerate() {
                let text = trim_json_ws(p.bytes);
                if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(text) {
                    return Err(format!(
                        "input {:?} is not JSON ({e}); merge: json needs JSON from every input",
                        p.name
                    ));
                }
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(serde_json::to_string(p.name).expect("a string").as_bytes());
                body.push(b':');
                body.extend_from_slice(text);
            }
            body.push(b'}');
            Ok(Merged {
                body,
                content_type: Some("application/json".into()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part<'a>(name: &'a str, bytes: &'a [u8], ct: Option<&'a str>) -> Part<'a> {
        Part {
            name,
            bytes,
            content_type: ct,
        }
    }

    #[test]
    fn concat_keeps_the_listed_order_and_a_common_type() {
        let m = merge(
            Merge::Concat,
            &[
                part("b", b"BB", Some("image/x-portable-graymap")),
                part("a", b"A", Some("image/x-portable-graymap")),
            ],
        )
        .unwrap();
        assert_eq!(m.body, b"BBA");
        assert_eq!(m.content_type.as_deref(), Some("image/x-portable-graymap"));
        let m = merge(
            Merge::Concat,
            &[part("a", b"1", Some("text/plain")), part("b", b"2", None)],
        )
        .unwrap();
        assert_eq!(m.content_type, None);
        let m = merge(Merge::Concat, &[]).unwrap();
        assert!(m.body.is_empty());
    }

    #[test]
    fn json_splices_each_input_verbatim_under_its_name() {
        let m = merge(
            Merge::Json,
            &[
                part("$input", b" {\"x\": 1.0}\n", None),
                part("edges", b"[1,2e3,\"\\u00e9\"]", Some("application/json")),
                part("n", b"7", None),
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(m.body).unwrap(),
            r#"{"$input":{"x": 1.0},"edges":[1,2e3,"\u00e9"],"n":7}"#
        );
        assert_eq!(m.content_type.as_deref(), Some("application/json"));
        let e = merge(Merge::Json, &[part("gray", b"P5 1 1 255 x", None)]).unwrap_err();
        assert!(e.starts_with("input \"gray\" is not JSON"), "{e}");
        assert!(
            merge(Merge::Json, &[part("a", b"", None)]).is_err(),
            "empty is not JSON"
        );
        assert!(
            merge(Merge::Json, &[part("a", b"1 2", None)]).is_err(),
            "one value only"
        );
    }
}
