//! The body of `PUT /v1/functions/{name}`: an `application/wasm` module
//! (default config), `multipart/form-data` with a `module` part and an
//! optional `config` part (JSON [`FunctionConfig`]), or `application/json`
//! naming an OCI reference for the server to pull ([`DeployOci`]).
//!
//! Parsed from memory, with no I/O: the server has already read the body
//! under its size limit. Every malformed body is an `Err` with a message
//! for the client, never a panic (this function is fuzzed).

use crate::FunctionConfig;
use bytes::Bytes;
use serde::Deserialize;

/// A parsed deploy request.
#[derive(Debug)]
pub struct DeployBody {
    /// The module: its bytes, or where to pull it from.
    pub module: ModuleSpec,
    /// The config (defaults when none was sent). Not yet validated.
    pub config: FunctionConfig,
}

/// Where a deploy's module is.
#[derive(Debug, Clone, PartialEq)]
pub enum ModuleSpec {
    /// Uploaded in the body (never empty).
    Bytes(Bytes),
    /// To be pulled from an OCI registry: the reference, without `oci://`.
    Oci(String),
}

/// The `application/json` form of a deploy: `{"oci": "REF", "config": {…}}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployOci {
    /// `[oci://]REGISTRY/REPOSITORY[:TAG|@DIGEST]`; the server pulls it.
    #[schema(example = "oci://ghcr.io/acme/hello:v1")]
    pub oci: String,
    /// Env, dir grants, limits and outbound hosts; defaults when absent or null.
    #[serde(default)]
    pub config: Option<FunctionConfig>,
}

/// Longest OCI reference accepted.
pub const MAX_OCI_REFERENCE: usize = 1024;

/// Parse a deploy body of content type `ctype`.
pub fn parse_body(ctype: &str, body: Bytes) -> Result<DeployBody, String> {
    let (wasm, config) = if ctype.starts_with("multipart/form-data") {
        parse_multipart(ctype, body)?
    } else if ctype.starts_with("application/json") {
        let d: DeployOci = serde_json::from_slice(&body).map_err(|e| {
            format!("invalid deploy JSON: {e}; expected {{\"oci\": \"REF\", \"config\": {{...}}}}")
        })?;
        let r = d.oci.strip_prefix("oci://").unwrap_or(&d.oci).trim();
        if r.is_empty()
            || r.len() > MAX_OCI_REFERENCE
            || r.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "invalid OCI reference {:?}: expected REGISTRY/REPOSITORY[:TAG|@DIGEST], at most {MAX_OCI_REFERENCE} characters",
                d.oci.chars().take(100).collect::<String>()
            ));
        }
        return Ok(DeployBody {
            module: ModuleSpec::Oci(r.to_string()),
            config: d.config.unwrap_or_default(),
        });
    } else if ctype.is_empty()
        || ctype.starts_with("application/wasm")
        || ctype.starts_with("application/octet-stream")
    {
        (body, FunctionConfig::default())
    } else {
        return Err(format!(
            "unsupported content type {ctype:?}: send application/wasm, multipart/form-data (module + config) or application/json ({{\"oci\": REF, \"config\": ...}})"
        ));
    };
    if wasm.is_empty() {
        return Err("empty module".into());
    }
    Ok(DeployBody {
        module: ModuleSpec::Bytes(wasm),
        config,
    })
}

impl DeployBody {
    /// The uploaded bytes, if the module was uploaded.
    pub fn wasm(&self) -> Option<&Bytes> {
        match &self.module {
            ModuleSpec::Bytes(b) => Some(b),
            ModuleSpec::Oci(_) => None,
        }
    }
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
        assert_eq!(&d.wasm().unwrap()[..], b"\0asm");
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

    #[test]
    fn oci_form() {
        let j = |s: &'static str| parse_body("application/json", Bytes::from_static(s.as_bytes()));
        let d =
            j(r#"{"oci":"oci://127.0.0.1:5000/fns/hello:v1","config":{"env":{"A":"1"}}}"#).unwrap();
        assert_eq!(
            d.module,
            ModuleSpec::Oci("127.0.0.1:5000/fns/hello:v1".into())
        );
        assert_eq!(d.config.env["A"], "1");
        let d = j(r#"{"oci":"r/x@sha256:00","config":null}"#).unwrap();
        assert_eq!(d.config, FunctionConfig::default());
        assert!(
            j(r#"{"oci":""}"#)
                .unwrap_err()
                .contains("invalid OCI reference")
        );
        assert!(j(r#"{"oci":"a b"}"#).is_err());
        assert!(
            j(r#"{"oci":"r/x","extra":1}"#)
                .unwrap_err()
                .contains("invalid deploy JSON")
        );
        assert!(j("{").is_err());
    }
}
