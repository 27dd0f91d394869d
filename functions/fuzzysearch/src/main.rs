//! Fuzzy search of `?search=` (default "Hamlet") in a text: the request body,
//! or `?file=` in a granted directory (e.g. `/data/text/corpus.txt`, made by
//! `scripts/gen-inputs`). The text is split into words (runs of alphanumeric
//! characters); a word matches when its case-insensitive normalized Levenshtein
//! similarity `1 - distance / max(len)` is at least `?threshold=` (default 0.8).
//! Answers JSON: counts plus the first `?limit=` (default 10) matching lines.
use serde_json::json;
use wisp_sdk::{Error, Request, Response};

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

        let (mut lines, mut words, mut matches, mut exact) = (0usize, 0usize, 0usize, 0usize);
        let mut matching_lines = 0usize;
        let mut first_lines = Vec::new();
        let mut word: Vec<char> = Vec::with_capacity(64);
        let mut row = Vec::with_capacity(64);
        for (n, line) in text.lines().enumerate() {
            lines += 1;
            let mut line_matched = false;
            let mut chars = line.chars().flat_map(char::to_lowercase).peekable();
            while chars.peek().is_some() {
                word.clear();
                for c in chars.by_ref() {
                    if c.is_alphanumeric() {
                        word.push(c);
                    } else {
                        break;
                    }
                }
                if word.is_empty() {
                    continue;
                }
                words += 1;
                let longest = word.len().max(pattern.len());
                // Cheap length filter before the O(n·m) distance.
                let diff = word.len().abs_diff(pattern.len());
                if 1.0 - (diff as f64 / longest as f64) < threshold {
                    continue;
                }
                let d = levenshtein(&word, &pattern, &mut row);
                if 1.0 - (d as f64 / longest as f64) >= threshold {
                    matches += 1;
                    exact += usize::from(d == 0);
                    line_matched = true;
                }
            }
            if line_matched {
                matching_lines += 1;
                if first_lines.len() < limit {
                    first_lines.push(n + 1);
                }
            }
        }
        Ok(Response::json(&json!({
            "search": search,
            "threshold": threshold,
            "lines": lines,
            "words": words,
            "matches": matches,
            "exact": exact,
            "matching_lines": matching_lines,
            "first_lines": first_lines,
        })))
    });
}
