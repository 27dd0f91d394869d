//! `fuzzysearch-http`: the `fuzzysearch` benchmark function as a
//! `wasi:http/proxy` component that fetches its text from an object store:
//! `GET {STORE_URL}/{object}` over `wasi:http/outgoing-handler`.
//!
//! Parameters (query string): `store` (overrides the `STORE_URL` environment
//! variable, i.e. the host config), `object` (default `corpus.txt`), `search`
//! (default `Hamlet`), `threshold` (default 0.8).
//!
//! Matching is word for word the algorithm of `functions/fuzzysearch` (words =
//! runs of alphanumeric characters after lowercasing; a word matches when
//! `1 - levenshtein / max(len)` ≥ threshold), so `matches`/`exact` agree with
//! it on the same text. Answers `application/json`:
//! `{"object", "url", "bytes", "lines", "words", "matches", "exact",
//! "matching_lines", "search", "threshold"}`.
//!
//! Errors: no store configured → 500; the store unreachable or denied → 502;
//! the store answering anything but 200 → 502; a bad parameter → 400.
use serde_json::json;
use wisp_http_guest::wasi;
use wisp_http_guest::{Params, encode_path, split_path, text};

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct FuzzySearchHttp;

wasi::http::proxy::export!(FuzzySearchHttp);

impl Guest for FuzzySearchHttp {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query();
        let (_, query) = split_path(path_with_query.as_deref());
        match run(&Params::parse(query)) {
            Ok(body) => wisp_http_guest::json(out, 200, body.as_bytes()),
            Err((status, msg)) => text(out, status, &msg),
        }
    }
}

fn run(params: &Params) -> Result<String, (u16, String)> {
    let bad = |e: String| (400, e);
    let search = params.get("search").unwrap_or("Hamlet").to_string();
    let threshold: f64 = params.parse_or("threshold", 0.8).map_err(bad)?;
    let object = params
        .get("object")
        .unwrap_or("corpus.txt")
        .trim_start_matches('/')
        .to_string();
    let pattern: Vec<char> = search.to_lowercase().chars().collect();
    if pattern.is_empty() {
        return Err((400, "search must not be empty\n".into()));
    }

    let store = match params.get("store") {
        Some(s) => s.to_string(),
        None => std::env::var("STORE_URL").ok().filter(|s| !s.is_empty()).ok_or_else(|| {
            (
                500,
                "no object store configured: set STORE_URL in the function's environment or pass ?store=<base URL>\n"
                    .to_string(),
            )
        })?,
    };
    let url = format!("{}/{}", store.trim_end_matches('/'), encode_path(&object));

    let (status, data) = wisp_http_guest::get(&url).map_err(|e| {
        (
            502,
            format!("object store request failed: GET {url}: {e}\n"),
        )
    })?;
    if status != 200 {
        return Err((
            502,
            format!("object store answered {status} for GET {url}\n"),
        ));
    }

    let counts = search_text(&String::from_utf8_lossy(&data), &pattern, threshold);
    Ok(json!({
        "object": object,
        "url": url,
        "bytes": data.len(),
        "lines": counts.lines,
        "words": counts.words,
        "matches": counts.matches,
        "exact": counts.exact,
        "matching_lines": counts.matching_lines,
        "search": search,
        "threshold": threshold,
    })
    .to_string())
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    lines: usize,
    words: usize,
    matches: usize,
    exact: usize,
    matching_lines: usize,
}

/// The word-level search of `functions/fuzzysearch` (keep the two in step).
fn search_text(text: &str, pattern: &[char], threshold: f64) -> Counts {
    let mut c = Counts::default();
    let mut word: Vec<char> = Vec::with_capacity(64);
    let mut row = Vec::with_capacity(64);
    for line in text.lines() {
        c.lines += 1;
        let mut line_matched = false;
        let mut chars = line.chars().flat_map(char::to_lowercase).peekable();
        while chars.peek().is_some() {
            word.clear();
            for ch in chars.by_ref() {
                if ch.is_alphanumeric() {
                    word.push(ch);
                } else {
                    break;
                }
            }
            if word.is_empty() {
                continue;
            }
            c.words += 1;
            let longest = word.len().max(pattern.len());
            // Cheap length filter before the O(n·m) distance.
            let diff = word.len().abs_diff(pattern.len());
            if 1.0 - (diff as f64 / longest as f64) < threshold {
                continue;
            }
            let d = levenshtein(&word, pattern, &mut row);
            if 1.0 - (d as f64 / longest as f64) >= threshold {
                c.matches += 1;
                c.exact += usize::from(d == 0);
                line_matched = true;
            }
        }
        c.matching_lines += usize::from(line_matched);
    }
    c
}

/// Levenshtein distance between two char slices, `row` is scratch space.
fn levenshtein(a: &[char], b: &[char], row: &mut Vec<usize>) -> usize {
    row.clear();
    row.extend(0..=b.len());
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if ca == cb {
                diag
            } else {
                1 + diag.min(up).min(row[j])
            };
            diag = up;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let p: Vec<char> = "hamlet".chars().collect();
        let c = search_text(
            "Hamlet, prince.\nHamlett and HAMLET\nnothing\nhamlets2 Camlet",
            &p,
            0.8,
        );
        assert_eq!(
            c,
            Counts {
                lines: 4,
                words: 8,
                matches: 4,
                exact: 2,
                matching_lines: 3
            }
        );
    }
}
