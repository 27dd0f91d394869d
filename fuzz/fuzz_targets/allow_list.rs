//! `AllowList::parse`, `allows` and `allows_socket`.
//!
//! Input: allow-list entries one per line (at most 64), then optionally an
//! empty line and probes, one per line: `SCHEME HOST PORT`. Every entry's
//! own host and port are probed too, under each scheme, plus a few fixed
//! probes.
//!
//! Invariants: never panics; the list parses iff every entry does; an empty
//! list allows nothing; a `*://` entry never allows `tcp` or `udp`; a list
//! allows a probe iff one of its entries does; `tcp`/`udp` are allowed only
//! when an entry names that protocol (`grants_sockets`); a socket grant
//! `tcp://ADDR:PORT` allows a socket to ADDR:PORT, however ADDR is spelled.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, SocketAddr};
use wisp_core::outbound::{AllowList, AllowedHost};

const SCHEMES: [&str; 7] = ["http", "https", "tcp", "udp", "HTTP", "TCP", "ftp"];

fn probes(entries: &[&str], extra: Option<&str>) -> Vec<(String, String, u16)> {
    let mut out: Vec<(String, String, u16)> = vec![
        ("tcp".into(), "127.0.0.1".into(), 6379),
        ("udp".into(), "::1".into(), 53),
        ("https".into(), "api.example.com".into(), 443),
        ("http".into(), "[::1]".into(), 8080),
    ];
    for e in entries {
        let Some((scheme, rest)) = e.split_once("://") else {
            continue;
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().unwrap_or(80)),
            None => (rest, 443),
        };
        let host = host
            .strip_prefix("*.")
            .map_or(host.to_string(), |s| format!("a.{s}"));
        for s in SCHEMES.iter().copied().chain([scheme]) {
            out.push((s.into(), host.clone(), port));
        }
    }
    for line in extra.unwrap_or("").lines().take(64) {
        let mut it = line.splitn(3, ' ');
        let (Some(s), Some(h)) = (it.next(), it.next()) else {
            continue;
        };
        let p = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        out.push((s.into(), h.into(), p));
    }
    out
}

fn socket_addr(host: &str, port: u16) -> Option<SocketAddr> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, port))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (list_text, probe_text) = match text.split_once("\n\n") {
        Some((l, p)) => (l, Some(p)),
        None => (&*text, None),
    };
    let entries: Vec<&str> = list_text
        .split('\n')
        .filter(|e| !e.is_empty())
        .take(64)
        .collect();
    let probes = probes(&entries, probe_text);

    let empty = AllowList::parse::<&str>(&[]).unwrap();
    assert!(empty.is_empty());
    for (s, h, p) in &probes {
        assert!(!empty.allows(s, h, *p), "empty list allows {s}://{h}:{p}");
        if let Some(a) = socket_addr(h, *p) {
            assert!(!empty.allows_socket(s, a), "empty list allows {s} {a}");
        }
    }

    let singles: Vec<Option<AllowList>> = entries
        .iter()
        .map(|e| AllowList::parse(&[e]).ok())
        .collect();
    for (e, one) in entries.iter().zip(&singles) {
        let Some(one) = one else { continue };
        assert!(AllowedHost::parse(e).is_ok());
        // A socket grant `tcp://ADDR:PORT` allows its own address, however
        // ADDR is spelled.
        if let Some((proto @ ("tcp" | "udp"), rest)) = e.split_once("://") {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let hp = match rest.strip_prefix('[') {
                Some(v6) => v6.split_once("]:"),
                None => rest.rsplit_once(':'),
            };
            if let Some((h, p)) = hp
                && let (Ok(ip), Ok(port)) = (h.parse::<IpAddr>(), p.parse::<u16>())
            {
                let a = SocketAddr::new(ip, port);
                assert!(
                    one.allows_socket(proto, a),
                    "{e:?} does not allow {proto} {a}"
                );
            }
        }
        if e.starts_with("*://") {
            for (_, h, p) in &probes {
                for proto in ["tcp", "udp"] {
                    assert!(!one.allows(proto, h, *p), "{e:?} allows {proto}://{h}:{p}");
                    if let Some(a) = socket_addr(h, *p) {
                        assert!(
                            !one.allows_socket(proto, a),
                            "{e:?} allows {proto} socket {a}"
                        );
                    }
                }
            }
        }
    }

    let list = AllowList::parse(&entries);
    assert_eq!(
        list.is_ok(),
        singles.iter().all(Option::is_some),
        "{entries:?}"
    );
    let Ok(list) = list else { return };
    for (s, h, p) in &probes {
        let allowed = list.allows(s, h, *p);
        let by_one = singles.iter().flatten().any(|one| one.allows(s, h, *p));
        assert_eq!(allowed, by_one, "{s}://{h}:{p} against {entries:?}");
        if list.is_empty() {
            assert!(!allowed);
        }
        for proto in ["tcp", "udp"] {
            if !list.grants_sockets(proto) {
                assert!(
                    !list.allows(proto, h, *p),
                    "{proto}://{h}:{p} allowed by {entries:?}"
                );
                if let Some(a) = socket_addr(h, *p) {
                    assert!(
                        !list.allows_socket(proto, a),
                        "{proto} {a} allowed by {entries:?}"
                    );
                }
            }
        }
    }
});
