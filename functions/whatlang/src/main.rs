//! Language identification with the `whatlang` crate (trigram model). The text
//! is the request body (UTF-8) when there is one, else `?text=` (default "The
//! quick brown fox jumps over the lazy dog"). Answers JSON; `lang` is the ISO
//! 639-3 code, or null when nothing could be detected.
use serde_json::json;
use wisp_sdk::{Request, Response};

fn main() {
    wisp_sdk::serve(|req: Request| {
        let text = if req.body.is_empty() {
            req.param("text")
                .filter(|t| !t.is_empty())
                .unwrap_or("The quick brown fox jumps over the lazy dog")
                .to_string()
        } else {
            req.body_text()?.to_string()
        };
        let body = match whatlang::detect(&text) {
            Some(info) => json!({
                "lang": info.lang().code(),
                "name": info.lang().eng_name(),
                "script": info.script().name(),
                "confidence": info.confidence(),
                "reliable": info.is_reliable(),
            }),
            None => {
                json!({ "lang": null, "name": null, "script": null, "confidence": 0.0, "reliable": false })
            }
        };
        Ok(Response::json(&body))
    });
}
