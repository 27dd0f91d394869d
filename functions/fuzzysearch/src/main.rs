//! Fuzzy search of `?search=` (default "Hamlet") in a text: the request body,
//! or `?file=` in a granted directory (e.g. `/data/text/corpus.txt`, made by
//! `scripts/gen-inputs`). The text is split into words (runs of alphanumeric
//! characters); a word matches when its case-insensitive normalized Levenshtein
//! similarity `1 - distance / max(len)` is at least `?threshold=` (default 0.8).
//! Answers JSON: counts plus the first `?limit=` (default 10) matching lines.
use serde_json::json;
use wisp_sdk::{Error, Request, Response};

fn main() {
    wisp_sdk::serve(|req: Request| {
        let search: String = req.param_or("search", "Hamlet".to_string())?;
        let threshold: f64 = req.param_or("threshold", 0.8)?;
        let limit: usize = req.param_or("limit", 10)?;
        let data = match req.param("file").filter(|f| !f.is_empty()) {
            Some(path) => wisp_sdk::fs::read(path)?,
            None if !req.body.is_empty() => req.body.clone(),
            None => {
                return Err(Error::bad_request(
                    "no text to search: send it as the request body or pass ?file= (a path in a granted directory)",
                ));
            }
        };
        let text = String::from_utf8_lossy(&data);
        let pattern: Vec<char> = search.to_lowercase().chars().collect();
        if pattern.is_empty() {
            return Err(Error::bad_request("search must not be empty"));
        }

        let c = fuzzysearch::search_text(&text, &pattern, threshold, limit);
        Ok(Response::json(&json!({
            "search": search,
            "threshold": threshold,
            "lines": c.lines,
            "words": c.words,
            "matches": c.matches,
            "exact": c.exact,
            "matching_lines": c.matching_lines,
            "first_lines": c.first_lines,
        })))
    });
}
