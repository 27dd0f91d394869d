//! Outbound host allow-lists, in Spin's `allowed_outbound_hosts` syntax:
//! `https://api.example.com`, `http://127.0.0.1:9000`, `*://*.example.com:*`.
//!
//! A pattern is `SCHEME://HOST[:PORT]`. `SCHEME` is `http`, `https` or `*`;
//! `HOST` is a name or IP, `*` (any host) or `*.suffix` (any subdomain of
//! suffix, not suffix itself); `PORT` is a number or `*`, and defaults to
//! the scheme's port (80/443; required with `*://`).
//!
//! `tcp://ADDR:PORT` and `udp://ADDR:PORT` grant raw sockets
//! (`wasi:sockets`) to components. They are never implied: `*://` covers
//! HTTP and HTTPS only, so a function gets sockets only when an entry names
//! the protocol. `ADDR` is an IP address or `*` (sockets connect to
//! addresses; name lookup is not offered), and `PORT` is required.

use std::fmt;

/// One parsed allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
    raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Suffix(String),
    Exact(String),
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowedHost {
    /// Parse one pattern; the error says what is wrong.
    pub fn parse(s: &str) -> Result<AllowedHost, String> {
        let err = |why: &str| {
            format!(
                "invalid allowed outbound host {s:?}: {why} (e.g. https://api.example.com, http://127.0.0.1:9000, *://*.example.com:*)"
            )
        };
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| err("missing scheme://"))?;
        let scheme = match scheme {
            "*" => None,
            "http" | "https" | "tcp" | "udp" => Some(scheme.to_string()),
            _ => return Err(err("scheme must be http, https, tcp, udp or *")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(err("only scheme, host and port are allowed, no path"));
        }
        let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
            // [v6]:port
            let (h, after) = stripped.split_once(']').ok_or_else(|| err("unclosed ["))?;
            if !after.is_empty() && !after.starts_with(':') {
                return Err(err("only :port may follow ]"));
            }
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        let port = match port {
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| err("port must be a number or *"))?,
            ),
            None => match scheme.as_deref().and_then(default_port) {
                Some(p) => Some(p),
                None => {
                    return Err(err(
                        "a port (or :*) is required with *://, tcp:// and udp://",
                    ));
                }
            },
        };
        let socket = matches!(scheme.as_deref(), Some("tcp" | "udp"));
        // IP addresses are kept in `IpAddr`'s canonical form, the one
        // `allows` compares with: `[0:0::1]` grants `::1`.
        let host = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) if socket && host != "*" => {
                return Err(err("tcp:// and udp:// take an IP address or *"));
            }
            Err(_) => host,
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(sfx) = host.strip_prefix("*.") {
            if sfx.is_empty() || sfx.contains('*') {
                return Err(err("bad wildcard host"));
            }
            HostPattern::Suffix(sfx.to_string())
        } else if host.is_empty() || host.contains('*') {
            return Err(err("bad host"));
        } else {
            HostPattern::Exact(host)
        };
        Ok(AllowedHost {
            scheme,
            host,
            port,
            raw: s.to_string(),
        })
    }

    /// Whether a request to `scheme://host:port` matches.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        match &self.scheme {
            Some(s) if s != scheme => return false,
            // `*://` is HTTP(S) only: sockets are granted by name.
            None if scheme != "http" && scheme != "https" => return false,
            _ => {}
        }
        if let Some(p) = self.port
            && p != port
        {
            return false;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => host.to_ascii_lowercase(),
        };
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => *h == host,
            HostPattern::Suffix(sfx) => {
                host.len() > sfx.len() + 1
                    && host.ends_with(sfx.as_str())
                    && host.as_bytes()[host.len() - sfx.len() - 1] == b'.'
            }
        }
    }
}

/// A parsed allow-list. Empty means no outbound access at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<AllowedHost>);

impl AllowList {
    /// Parse every entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, String> {
        entries
            .iter()
            .map(|e| AllowedHost::parse(e.as_ref()))
            .collect::<Result<_, _>>()
            .map(AllowList)
    }
    /// Whether any entry allows `scheme://host:port`.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.0.iter().any(|a| a.allows(scheme, host, port))
    }
    /// True when nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Whether any entry grants the socket protocol `proto` (`tcp`/`udp`).
    pub fn grants_sockets(&self, proto: &str) -> bool {
        self.0.iter().any(|a| a.scheme.as_deref() == Some(proto))
    }
    /// Whether a `proto` (`tcp`/`udp`) socket may use `addr`.
    pub fn allows_socket(&self, proto: &str, addr: std::net::SocketAddr) -> bool {
        let ip = addr.ip().to_string();
        self.allows(proto, &ip, addr.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_default_ports() {
        let a = AllowedHost::parse("https://api.example.com").unwrap();
        assert!(a.allows("https", "api.example.com", 443));
        assert!(a.allows("https", "API.example.com", 443));
        assert!(!a.allows("http", "api.example.com", 80), "scheme");
        assert!(!a.allows("https", "api.example.com", 8443), "port");
        assert!(!a.allows("https", "evil.com", 443), "host");
        assert!(!a.allows("https", "x.api.example.com", 443), "subdomain");
    }

    #[test]
    fn ip_and_explicit_port() {
        let a = AllowedHost::parse("http://127.0.0.1:9000").unwrap();
        assert!(a.allows("http", "127.0.0.1", 9000));
        assert!(!a.allows("http", "127.0.0.1", 9001));
        assert!(!a.allows("https", "127.0.0.1", 9000));
        let v6 = AllowedHost::parse("http://[::1]:8080").unwrap();
        assert!(v6.allows("http", "[::1]", 8080));
    }

    #[test]
    fn wildcards() {
        let a = AllowedHost::parse("*://*.example.com:*").unwrap();
        assert!(a.allows("http", "a.example.com", 1));
        assert!(a.allows("https", "b.c.example.com", 443));
        assert!(
            !a.allows("https", "example.com", 443),
            "suffix only matches subdomains"
        );
        assert!(!a.allows("https", "badexample.com", 443));
        let any = AllowedHost::parse("http://*:*").unwrap();
        assert!(any.allows("http", "anything", 1234));
        assert!(!any.allows("https", "anything", 1234));
    }

    #[test]
    fn ip_spellings_and_strict_brackets() {
        let a = AllowedHost::parse("http://[0:0::1]:8080").unwrap();
        assert!(a.allows("http", "[::1]", 8080));
        assert!(AllowedHost::parse("http://[::1]junk").is_err());
        let any = AllowedHost::parse("*://*:*").unwrap();
        assert!(!any.allows("ftp", "x", 21), "*:// is http and https only");
        assert!(!any.allows("TCP", "x", 1));
    }

    #[test]
    fn sockets_only_by_name() {
        let l = AllowList::parse(&["*://*:*", "tcp://127.0.0.1:6379"]).unwrap();
        assert!(l.grants_sockets("tcp"));
        assert!(!l.grants_sockets("udp"));
        assert!(l.allows_socket("tcp", "127.0.0.1:6379".parse().unwrap()));
        assert!(!l.allows_socket("tcp", "127.0.0.1:6380".parse().unwrap()));
        assert!(
            !l.allows_socket("udp", "127.0.0.1:6379".parse().unwrap()),
            "*:// is not udp"
        );
        let http_only = AllowList::parse(&["*://*:*"]).unwrap();
        assert!(!http_only.allows_socket("tcp", "10.0.0.1:80".parse().unwrap()));
        assert!(
            AllowedHost::parse("tcp://redis.local:6379").is_err(),
            "sockets take IPs"
        );
        assert!(
            AllowedHost::parse("tcp://127.0.0.1").is_err(),
            "port required"
        );
    }

    #[test]
    fn socket_grants_match_however_the_address_is_spelled() {
        // Found by the `allow_list` fuzz target: `udp://[::0]:53` parsed,
        // but compared as the string "::0" with the socket's "::", so the
        // grant never allowed its own address.
        for (entry, addr) in [
            ("udp://[::0]:53", "[::]:53"),
            ("tcp://[0:0:0:0:0:0:0:1]:6379", "[::1]:6379"),
            ("tcp://[::FFFF:7F00:1]:80", "[::ffff:127.0.0.1]:80"),
            ("tcp://::1:6379", "[::1]:6379"),
        ] {
            let l = AllowList::parse(&[entry]).unwrap();
            let proto = &entry[..3];
            assert!(l.allows_socket(proto, addr.parse().unwrap()), "{entry}");
            assert_eq!(l.0[0].to_string(), entry, "shown as written");
        }
    }

    #[test]
    fn rejects_bad_patterns() {
        for bad in [
            "example.com",
            "ftp://x.com",
            "*://x.com",
            "http://x.com/path",
            "http://x.com:99999",
            "http://a*b.com",
            "http://",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert!(AllowList::parse::<&str>(&[]).unwrap().is_empty());
    }
}
