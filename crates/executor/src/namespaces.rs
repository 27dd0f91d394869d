//! Namespaces and their keys. A key is issued once (`uuid:key`, as
//! OpenWhisk's) and only its SHA-256 is stored; the executor keeps the
//! hashes in memory and checks a presented key in constant time, so
//! authenticating a request touches no database.

use crate::Executor;
use crate::error::{Error, join_err, store_err};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use wisp_core::ErrorKind;
use wisp_store::{Namespace, Store};

/// A key as issued: shown once, never stored.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    /// The namespace.
    pub namespace: String,
    /// The public half.
    pub uuid: String,
    /// The secret half.
    pub key: String,
    /// `uuid:key`, what clients send (`Authorization: Basic base64(uuid:key)`).
    pub auth: String,
}

/// uuid → (namespace, SHA-256 of the key), and the namespaces that exist.
pub(crate) struct Keys {
    by_uuid: RwLock<HashMap<String, (String, [u8; 32])>>,
    names: RwLock<std::collections::HashSet<String>>,
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn parse_hash(hex_s: &str) -> Option<[u8; 32]> {
    let v = hex::decode(hex_s).ok()?;
    v.try_into().ok()
}

impl Keys {
    pub(crate) fn load(store: &Store) -> wisp_store::Result<Keys> {
        let keys = Keys {
            by_uuid: RwLock::new(HashMap::new()),
            names: RwLock::new(Default::default()),
        };
        for ns in store.namespaces()? {
            keys.set(&ns);
        }
        Ok(keys)
    }

    fn set(&self, ns: &Namespace) {
        let mut by_uuid = self.by_uuid.write().unwrap();
        by_uuid.retain(|_, (name, _)| name != &ns.name);
        if let (Some(uuid), Some(hash)) = (&ns.uuid, ns.key_sha256.as_deref().and_then(parse_hash))
        {
            by_uuid.insert(uuid.clone(), (ns.name.clone(), hash));
        }
        self.names.write().unwrap().insert(ns.name.clone());
    }

    fn forget(&self, name: &str) {
        self.by_uuid.write().unwrap().retain(|_, (n, _)| n != name);
        self.names.write().unwrap().remove(name);
    }
}

/// A fresh `uuid:key`: a random (v4) UUID and 64 random alphanumerics,
/// the shape of OpenWhisk's keys.
fn new_key() -> (String, String) {
    use rand::Rng;
    let b: [u8; 16] = rand::random();
    let mut u = u128::from_be_bytes(b);
    u = (u & !(0xf << 76)) | (0x4 << 76); // version 4
    u = (u & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
    let h = format!("{u:032x}");
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let key = (0..64)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    (uuid, key)
}

impl Executor {
    /// The namespace whose key this is, if any. Constant time in the key.
    pub fn authenticate(&self, uuid: &str, key: &str) -> Option<String> {
        let given = sha256(key);
        let by_uuid = self.keys.by_uuid.read().unwrap();
        let (ns, want) = by_uuid.get(uuid)?;
        let diff = given
            .iter()
            .zip(want.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then(|| ns.clone())
    }

    /// Whether a namespace exists.
    pub fn namespace_exists(&self, name: &str) -> bool {
        self.keys.names.read().unwrap().contains(name)
    }

    /// Every namespace.
    pub async fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.namespaces())
            .await
            .map_err(join_err)?
            .map_err(store_err)
    }

    /// Create a namespace and issue its key.
    pub async fn create_namespace(&self, name: &str) -> Result<Issued, Error> {
        wisp_core::validate_namespace(name).map_err(|m| Error::new(ErrorKind::BadRequest, m))?;
        self.issue(name, true).await
    }

    /// Issue a new key for a namespace; the old one stops working at once.
    pub async fn rotate_key(&self, name: &str) -> Result<Issued, Error> {
        self.issue(name, false).await
    }

    async fn issue(&self, name: &str, create: bool) -> Result<Issued, Error> {
        let (uuid, key) = new_key();
        let hash = hex::encode(sha256(&key));
        let store = self.store.clone();
        let (n, u) = (name.to_string(), uuid.clone());
        let ns = tokio::task::spawn_blocking(move || {
            if create {
                store.create_namespace(&n, &u, &hash)
            } else {
                store.set_namespace_key(&n, &u, &hash)
            }
        })
        .await
        .map_err(join_err)?
        .map_err(store_err)?;
        self.keys.set(&ns);
        tracing::info!(namespace = %name, %uuid, created = create, "namespace key issued");
        Ok(Issued {
            namespace: name.to_string(),
            auth: format!("{uuid}:{key}"),
            uuid,
            key,
        })
    }

    /// Delete a namespace with everything in it. The default namespace
    /// can't be deleted.
    pub async fn delete_namespace(self: &Arc<Self>, name: &str) -> Result<bool, Error> {
        if name == wisp_core::DEFAULT_NAMESPACE {
            return Err(Error::new(
                ErrorKind::Conflict,
                "the default namespace can't be removed (rotate its key instead)",
            ));
        }
        let n = name.to_string();
        let existed = self
            .forget_after(name, move |store| store.delete_namespace(&n))
            .await?;
        self.keys.forget(name);
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_look_like_openwhisk_keys() {
        let (uuid, key) = super::new_key();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(super::new_key().1, key);
    }
}
