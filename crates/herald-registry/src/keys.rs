//! Loading the master keys of `[secrets]` from files or environment
//! variables into a [`KeyRing`], and generating new ones.
//!
//! A key is 32 random bytes written as standard base64 (what
//! `herald secrets generate-key` prints). Errors name the config key and
//! never the key material.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use herald_core::config::{ConfigError, SecretsConfig};
use rand::RngCore as _;

use crate::sealing::{KeyRing, KEY_LEN};

/// A new master key, base64.
pub fn generate_key() -> String {
    let mut key = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    STANDARD.encode(key)
}

/// The ring `[secrets]` describes; `None` when no key is configured.
pub fn load(cfg: &SecretsConfig) -> Result<Option<KeyRing>, ConfigError> {
    let bad = |key: String, message: String| ConfigError::Invalid { key, message };
    if cfg.keys.is_empty() {
        if !cfg.active_key.is_empty() {
            return Err(bad(
                "secrets.active_key".into(),
                format!("names {:?} but secrets.keys is empty", cfg.active_key),
            ));
        }
        return Ok(None);
    }
    let mut keys = Vec::new();
    for (i, k) in cfg.keys.iter().enumerate() {
        let field = |f: &str| format!("secrets.keys[{i}].{f}");
        let id_ok = (1..=32).contains(&k.id.len())
            && k.id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !id_ok {
            return Err(bad(
                field("id"),
                "must be 1 to 32 characters of A-Z a-z 0-9 . _ -".into(),
            ));
        }
        if keys.iter().any(|(id, _)| id == &k.id) {
            return Err(bad(field("id"), format!("{:?} is configured twice", k.id)));
        }
        let text = match (&k.file, &k.env) {
            (Some(path), None) => std::fs::read_to_string(path).map_err(|e| {
                bad(
                    field("file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?,
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                bad(
                    field("env"),
                    format!("the environment variable {var} is not set"),
                )
            })?,
            _ => {
                return Err(bad(
                    format!("secrets.keys[{i}]"),
                    "set exactly one of `file` and `env` (where the base64 key is read from)"
                        .into(),
                ))
            }
        };
        let bytes = STANDARD.decode(text.trim()).map_err(|_| {
            bad(
                field(if k.file.is_some() { "file" } else { "env" }),
                "does not hold a base64 key; create one with `herald secrets generate-key`".into(),
            )
        })?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            bad(
                field(if k.file.is_some() { "file" } else { "env" }),
                format!("holds {} bytes; a master key is {KEY_LEN} bytes (`herald secrets generate-key`)", b.len()),
            )
        })?;
        keys.push((k.id.clone(), key));
    }
    let active = if cfg.active_key.is_empty() {
        if keys.len() > 1 {
            return Err(bad(
                "secrets.active_key".into(),
                "is required when more than one key is configured (the one new secrets are sealed with)".into(),
            ));
        }
        keys[0].0.clone()
    } else {
        cfg.active_key.clone()
    };
    KeyRing::new(&active, keys).map(Some).ok_or_else(|| {
        bad(
            "secrets.active_key".into(),
            format!("names {active:?}, which is not among secrets.keys"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::config::MasterKeyConfig;

    fn key_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn loads_files_and_names_every_mistake() {
        let dir = std::env::temp_dir().join(format!("herald-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = key_file(&dir, "k1", &format!("{}\n", generate_key()));
        let good2 = key_file(&dir, "k2", &generate_key());
        let short = key_file(&dir, "short", "YWJj");
        let entry = |id: &str, file: &std::path::Path| MasterKeyConfig {
            id: id.into(),
            file: Some(file.to_path_buf()),
            env: None,
        };
        let cfg = |active: &str, keys: Vec<MasterKeyConfig>| SecretsConfig {
            active_key: active.into(),
            keys,
            ..Default::default()
        };
        assert!(load(&SecretsConfig::default()).unwrap().is_none());
        let ring = load(&cfg("", vec![entry("k1", &good)])).unwrap().unwrap();
        assert_eq!(ring.active_id(), "k1");
        let ring = load(&cfg("k2", vec![entry("k1", &good), entry("k2", &good2)]))
            .unwrap()
            .unwrap();
        assert!(ring.has("k1") && ring.active_id() == "k2");

        let err = |c: SecretsConfig| load(&c).unwrap_err().to_string();
        assert!(err(cfg("", vec![entry("k1", &good), entry("k2", &good2)]))
            .contains("secrets.active_key"));
        assert!(err(cfg("k3", vec![entry("k1", &good)])).contains("not among"));
        assert!(err(cfg("", vec![entry("bad id", &good)])).contains("secrets.keys[0].id"));
        assert!(err(cfg("", vec![entry("k1", &short)])).contains("holds 3 bytes"));
        assert!(
            err(cfg("", vec![entry("k1", &dir.join("missing"))])).contains("secrets.keys[0].file")
        );
        assert!(err(cfg("k1", vec![])).contains("secrets.active_key"));
        let neither = MasterKeyConfig {
            id: "k1".into(),
            file: None,
            env: None,
        };
        assert!(err(cfg("", vec![neither])).contains("exactly one"));
        let unset = MasterKeyConfig {
            id: "k1".into(),
            file: None,
            env: Some("HERALD_TEST_NO_SUCH_VAR".into()),
        };
        assert!(err(cfg("", vec![unset])).contains("HERALD_TEST_NO_SUCH_VAR is not set"));
        // The key material itself is never in an error.
        let text = std::fs::read_to_string(&good).unwrap();
        assert!(!err(cfg("k3", vec![entry("k1", &good)])).contains(text.trim()));
        std::fs::remove_dir_all(&dir).ok();
    }
}
