//! The flags containerd passes a shim, parsed as Go's `flag` package (and
//! containerd-shim's `go-flag`) does: `-name value`, `-name=value`, either
//! with one or two dashes, boolean flags without a value; flags stop at the
//! first other argument (the action) or at `--`.

use std::ffi::OsString;

/// containerd's flags (containerd-shim's `Flags`, the fields the launcher
/// reads).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flags {
    /// `-namespace`.
    pub namespace: String,
    /// `-id`.
    pub id: String,
    /// `-address`: containerd's socket.
    pub address: String,
    /// `-socket`: set only for the daemon itself.
    pub socket: String,
    /// `-debug`.
    pub debug: bool,
    /// `-v` or `-version`.
    pub version: bool,
    /// The first argument after the flags: `start`, `delete`, or none.
    pub action: String,
}

/// Parse `args` (without argv\[0\]). An unknown flag, a flag without its
/// value or an argument that is not UTF-8 is an error.
pub fn parse(args: &[OsString]) -> Result<Flags, String> {
    let mut f = Flags::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let arg = arg
            .to_str()
            .ok_or_else(|| format!("argument {arg:?} is not UTF-8"))?;
        if arg == "--" {
            break;
        }
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            f.action = arg.to_string();
            break;
        };
        if flag.is_empty() || flag.starts_with('-') || flag.starts_with('=') {
            return Err(format!("bad flag syntax: {arg}"));
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag, None),
        };
        let boolean = |v: Option<&str>| -> Result<bool, String> {
            match v {
                None => Ok(true),
                Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
                Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
                Some(v) => Err(format!("invalid boolean value {v:?} for -{name}")),
            }
        };
        match name {
            "debug" => f.debug = boolean(inline)?,
            "v" | "version" => f.version |= boolean(inline)?,
            // Booleans the launcher leaves to the daemon.
            "info" => {
                boolean(inline)?;
                return Err("-info is the daemon's".into());
            }
            "namespace" | "id" | "address" | "socket" | "bundle" | "publish-binary" => {
                let value = match inline {
                    Some(v) => v.to_string(),
                    None => it
                        .next()
                        .and_then(|v| v.to_str())
                        .ok_or_else(|| format!("flag needs an argument: -{name}"))?
                        .to_string(),
                };
                match name {
                    "namespace" => f.namespace = value,
                    "id" => f.id = value,
                    "address" => f.address = value,
                    "socket" => f.socket = value,
                    _ => {}
                }
            }
            _ => return Err(format!("flag provided but not defined: -{name}")),
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Flags, String> {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn containerds_start_and_delete() {
        // containerd 1.6's `start` and `delete` command lines.
        let f = p(&[
            "-namespace",
            "default",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "c1",
            "-debug",
            "start",
        ])
        .unwrap();
        assert_eq!(f.namespace, "default");
        assert_eq!(f.address, "/run/containerd/containerd.sock");
        assert_eq!(f.id, "c1");
        assert!(f.debug && !f.version);
        assert_eq!(f.action, "start");
        let f = p(&["--namespace=k8s.io", "-id=c2", "-bundle", "/b", "delete"]).unwrap();
        assert_eq!((f.namespace.as_str(), f.id.as_str()), ("k8s.io", "c2"));
        assert_eq!(f.action, "delete");
    }

    #[test]
    fn version_and_the_daemons_flags() {
        assert!(p(&["-v"]).unwrap().version);
        assert!(p(&["--version"]).unwrap().version);
        assert!(!p(&["-v=false"]).unwrap().version);
        let f = p(&[
            "-namespace",
            "n",
            "-id",
            "c",
            "-address",
            "a",
            "-socket",
            "unix:///s",
        ])
        .unwrap();
        assert_eq!((f.socket.as_str(), f.action.as_str()), ("unix:///s", ""));
        // Flags end at the action or at `--`.
        assert_eq!(
            p(&["start", "-v"]).unwrap(),
            Flags {
                action: "start".into(),
                ..Default::default()
            }
        );
        assert_eq!(p(&["--", "-v"]).unwrap(), Flags::default());
    }

    #[test]
    fn what_the_launcher_does_not_know_is_an_error() {
        assert!(p(&["-info"]).is_err());
        assert!(p(&["-frobnicate", "start"]).is_err());
        assert!(p(&["-id"]).is_err());
        assert!(p(&["-debug=maybe"]).is_err());
        assert!(p(&["---id", "x"]).is_err());
    }
}
