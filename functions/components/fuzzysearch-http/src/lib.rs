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

    let counts = fuzzysearch::search_text(&String::from_utf8_lossy(&data), &pattern, threshold, 0);
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
