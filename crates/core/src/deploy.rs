//! The body of `PUT /v1/functions/{name}`: an `application/wasm` module
//! (default config), or `multipart/form-data` with a `module` part and an
//! optional `config` part (JSON [`FunctionConfig`]).
//!
//! Parsed from memory, with no I/O: the server has already read the body
//! under its size limit. Every malformed body is an `Err` with a message
//! for the client, never a panic (this function is fuzzed).

use crate::FunctionConfig;
use bytes::Bytes;

/// A parsed deploy request.
#[derive(Debug)]
pub struct DeployBody {
    /// The module bytes, as uploaded.
    pub wasm: Bytes,
    /// The config (defaults when none was sent). Not yet validated.
    pub config: FunctionConfig,
}

/// Parse a deploy body of content type `ctype`.
pub fn parse_body(ctype: &str, body: Bytes) -> Result<DeployBody, String> {
    let (wasm, config) = if ctype.starts_with("multipart/form-data") {
        parse_multipart(ctype, body)?
    } else if ctype.is_empty()
        || ctype.starts_with("application/wasm")
        || ctype.starts_with("application/octet-stream")
    {
        (body, FunctionConfig::default())
    } else {
        return Err(format!(
            "unsupported content type {ctype:?}: send application/wasm or multipart/form-data (module + config)"
        ));
    };
    if wasm.is_empty() {
        return Err("empty module".into());
    }
    Ok(DeployBody { wasm, config })
}

fn parse_multipart(ctype: &str, body: Bytes) -> Result<(Bytes, FunctionConfig), String> {
    let boundary = multer::parse_boundary(ctype).map_err(|e| format!("bad multipart body: {e}"))?;
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    // The whole body is in memory: every poll completes at once.
    futures::executor::block_on(async {
        let mut wasm = None;
        let mut config = None;
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| format!("bad multipart body: {e}"))?
        {
            let name = field.name().unwrap_or("").to_string();
            match name.as_str() {
                "module" | "config" => {
                    let b = field
                        .bytes()
                        .await
                        .map_err(|e| format!("reading {name} part: {e}"))?;
                    let slot = if name == "module" {
                        &mut wasm
                    } else {
                        &mut config
                    };
                    if slot.replace(b).is_some() {
                        return Err(format!("multipart body has two `{name}` parts"));
                    }
                }
                other => {
                    return Err(format!(
                        "unexpected multipart part {other:?}; expected `module` and `config`"
                    ));
                }
            }
        }
        let config = match config {
            Some(b) => {
                serde_json::from_slice(&b).map_err(|e| format!("invalid config JSON: {e}"))?
            }
            None => FunctionConfig::default(),
        };
        Ok((wasm.ok_or("multipart body has no `module` part")?, config))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multipart(parts: &[(&str, &[u8])]) -> (String, Bytes) {
        let mut b = Vec::new();
        for (name, data) in parts {
            b.extend_from_slice(
                format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                    .as_bytes(),
            );
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"--XyZ--\r\n");
        ("multipart/form-data; boundary=XyZ".into(), Bytes::from(b))
    }

    #[test]
    fn forms() {
        let d = parse_body("application/wasm", Bytes::from_static(b"\0asm")).unwrap();
        assert_eq!(&d.wasm[..], b"\0asm");
        let (ct, body) = multipart(&[("module", b"\0asm"), ("config", br#"{"env":{"A":"1"}}"#)]);
        let d = parse_body(&ct, body).unwrap();
        assert_eq!(d.config.env["A"], "1");
        let (ct, body) = multipart(&[("module", b"m"), ("module", b"n")]);
        assert!(parse_body(&ct, body).unwrap_err().contains("two"));
        let (ct, body) = multipart(&[("config", b"{}")]);
        assert!(parse_body(&ct, body).unwrap_err().contains("no `module`"));
        let (ct, body) = multipart(&[("module", b"m"), ("config", b"{nope")]);
        assert!(
            parse_body(&ct, body)
                .unwrap_err()
                .contains("invalid config JSON")
        );
        assert!(parse_body("text/plain", Bytes::new()).is_err());
        assert!(
            parse_body("multipart/form-data", Bytes::new()).is_err(),
            "no boundary"
        );
        assert!(parse_body("", Bytes::new()).unwrap_err().contains("empty"));
    }
}
