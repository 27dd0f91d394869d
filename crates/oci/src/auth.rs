//! Registry credentials: given explicitly (flags, environment), or found in
//! Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), or none (anonymous).
//!
//! From `config.json` Wisp reads `auths.<registry>.auth` (base64
//! `user:password`), or its `username` and `password` fields, and
//! `registrytoken` (a bearer token). Credential helpers (`credsStore`,
//! `credHelpers`) are not run: Wisp executes no programs named by a file.
//! Bearer-token registries need nothing more: oci-client answers the
//! `WWW-Authenticate: Bearer` challenge with the basic credentials.

use crate::{Error, Result};
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// No credentials.
    #[default]
    Anonymous,
    /// User name and password (or a personal access token as password).
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
    /// A bearer token sent as it is.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

impl Credentials {
    pub(crate) fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        }
    }
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize, Default)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// The `config.json` Docker would read: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// The key a registry goes by in `auths`: scheme and path dropped, Docker
/// Hub's several names folded into one.
fn registry_key(s: &str) -> String {
    let s = s
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        _ => host,
    }
}

/// Credentials for `registry` (`host[:port]`) in a `config.json` document.
/// `Ok(None)` when it has none for that registry; malformed JSON or a
/// malformed `auth` field is an error naming `source`.
pub fn parse_docker_config(
    json: &[u8],
    registry: &str,
    source: &str,
) -> Result<Option<Credentials>> {
    let cfg: DockerConfig = serde_json::from_slice(json)
        .map_err(|e| Error::Invalid(format!("{source}: not a Docker config: {e}")))?;
    let want = registry_key(registry);
    let Some((key, a)) = cfg.auths.iter().find(|(k, _)| registry_key(k) == want) else {
        return Ok(None);
    };
    if let Some(t) = a.registrytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::Bearer(t.to_string())));
    }
    if let Some(enc) = a.auth.as_deref().filter(|s| !s.is_empty()) {
        let bad = || {
            Error::Invalid(format!(
                "{source}: auths.{key:?}.auth is not base64 of user:password"
            ))
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(enc.trim())
            .map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (u, p) = raw.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials::Basic {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    match (&a.username, &a.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credentials::Basic {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Ok(None),
    }
}

/// Credentials for `registry` from the Docker config file, if it exists
/// and names that registry. Blocking (reads a small file).
pub fn from_docker_config(registry: &str) -> Result<Option<Credentials>> {
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Io {
                context: format!("reading {}", path.display()),
                source: e,
            });
        }
    };
    parse_docker_config(&bytes, registry, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> Option<Credentials> {
        Some(Credentials::Basic {
            username: u.into(),
            password: p.into(),
        })
    }

    #[test]
    fn docker_config_forms() {
        let enc = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let json = format!(
            r#"{{"auths":{{
                "127.0.0.1:5000":{{"auth":"{enc}"}},
                "https://index.docker.io/v1/":{{"username":"bob","password":"pw"}},
                "ghcr.io":{{"registrytoken":"tok"}},
                "empty.example":{{}}
            }},"credsStore":"desktop"}}"#
        );
        let p = |r: &str| parse_docker_config(json.as_bytes(), r, "cfg").unwrap();
        assert_eq!(p("127.0.0.1:5000"), basic("alice", "s3cr:et"));
        assert_eq!(p("index.docker.io"), basic("bob", "pw"));
        assert_eq!(p("docker.io"), basic("bob", "pw"));
        assert_eq!(p("ghcr.io"), Some(Credentials::Bearer("tok".into())));
        assert_eq!(p("127.0.0.1:5001"), None, "the port is part of the name");
        assert_eq!(p("empty.example"), None);
        assert!(parse_docker_config(b"{nope", "x", "cfg").is_err());
        let bad = r#"{"auths":{"r":{"auth":"!!!"}}}"#;
        let e = parse_docker_config(bad.as_bytes(), "r", "cfg")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not base64"), "{e}");
        assert!(!format!("{:?}", basic("a", "secret").unwrap()).contains("secret"));
    }
}
