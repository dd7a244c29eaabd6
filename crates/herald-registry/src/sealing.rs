//! Endpoint secrets at rest: the signing secrets and sensitive header
//! values of a registry record are sealed with AES-256-GCM under a master
//! key before the record is written, and opened when it is read back.
//!
//! Pure logic, no I/O: [`KeyRing`] is built from key bytes ([`crate::keys`]
//! reads them from files or the environment). Every sealed value carries
//! its key id, so nodes open values under the old and the new master key
//! alike while a rotation runs. The associated data binds a value to its
//! endpoint id and field, so a sealed secret copied into another record
//! (by anyone who can write the topic) does not open.
//!
//! Nonces are 96 random bits per seal; a key seals far fewer than the 2^32
//! values after which random nonces would risk a collision (one per
//! endpoint write).

use std::collections::{BTreeMap, HashMap};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use herald_core::Endpoint;
use herald_proto::v1::{EndpointRecord, SealedValue};
use rand::RngCore as _;

/// Bytes in a master key.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// Why a record's sealed values could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The value names a master key this node does not have.
    #[error("sealed with master key {0:?}, which this node does not have (secrets.keys)")]
    UnknownKey(String),
    /// The key is known but the value does not open with it (tampered,
    /// moved from another record, or a different key under the same id).
    #[error("the sealed {0} does not open with its master key (tampered, moved from another record, or the key id was reused for another key)")]
    Corrupt(String),
    /// The opened secret is not text.
    #[error("the sealed {0} is not UTF-8")]
    NotText(String),
}

/// The master keys of this node: one seals, all open.
pub struct KeyRing {
    active: String,
    keys: HashMap<String, Aes256Gcm>,
    /// Read records whose secrets are in plaintext (written before sealing
    /// existed). Off by default: without it, nobody can write a usable
    /// endpoint into the topic without a master key.
    accept_plaintext: bool,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("ids", &ids)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A ring that seals with `active` and opens with every key in `keys`;
    /// `None` when `active` is not among them.
    pub fn new(
        active: &str,
        keys: impl IntoIterator<Item = (String, [u8; KEY_LEN])>,
    ) -> Option<Self> {
        let keys: HashMap<String, Aes256Gcm> = keys
            .into_iter()
            .map(|(id, k)| (id, Aes256Gcm::new(&k.into())))
            .collect();
        keys.contains_key(active).then(|| Self {
            active: active.to_string(),
            keys,
            accept_plaintext: false,
        })
    }

    /// A ring with one random key that lives as long as the process
    /// (`herald dev`: even dev writes no plaintext secret).
    pub fn ephemeral() -> Self {
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        let mut id = [0u8; 4];
        rand::rng().fill_bytes(&mut id);
        let id = format!("ephemeral-{:08x}", u32::from_be_bytes(id));
        let keys = [(id.clone(), Aes256Gcm::new(&key.into()))]
            .into_iter()
            .collect();
        Self {
            active: id,
            keys,
            accept_plaintext: false,
        }
    }

    /// Reads plaintext secrets too (`secrets.accept_plaintext`: records from
    /// before sealing existed, until `ResealSecrets` has sealed them).
    pub fn accept_plaintext(mut self, yes: bool) -> Self {
        self.accept_plaintext = yes;
        self
    }

    /// The id new values are sealed under.
    pub fn active_id(&self) -> &str {
        &self.active
    }

    /// Whether this ring has the key `id`.
    pub fn has(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    fn seal(&self, aad: &str, plain: &[u8]) -> SealedValue {
        // `new` and `ephemeral` guarantee the active key is in the ring.
        let Some(cipher) = self.keys.get(&self.active) else {
            unreachable!("the active master key is always in the ring")
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // AES-GCM refuses only plaintexts over 64 GiB; secrets and header
        // values are bounded far below that by the API.
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM seals any value under 64 GiB");
        SealedValue {
            key_id: self.active.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    fn open(&self, aad: &str, what: &str, v: &SealedValue) -> Result<String, OpenError> {
        let cipher = self
            .keys
            .get(&v.key_id)
            .ok_or_else(|| OpenError::UnknownKey(v.key_id.clone()))?;
        if v.nonce.len() != NONCE_LEN {
            return Err(OpenError::Corrupt(what.to_string()));
        }
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&v.nonce),
                Payload {
                    msg: &v.ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Corrupt(what.to_string()))?;
        String::from_utf8(plain).map_err(|_| OpenError::NotText(what.to_string()))
    }

    /// The record to write for `ep`: secrets and sensitive header values
    /// sealed under the active key, none of them in plaintext.
    pub fn seal_endpoint(&self, ep: &Endpoint) -> EndpointRecord {
        let mut rec = ep.to_record();
        let origin = herald_core::endpoint::origin(&ep.url);
        rec.sealed_secrets = std::mem::take(&mut rec.secrets)
            .iter()
            .enumerate()
            .map(|(i, s)| self.seal(&secret_aad(&ep.id, &origin, i), s.as_bytes()))
            .collect();
        for name in &ep.sensitive_headers {
            if let Some(value) = rec.headers.remove(name) {
                let sealed = self.seal(&header_aad(&ep.id, &origin, name), value.as_bytes());
                rec.sealed_headers.insert(name.clone(), sealed);
            }
        }
        rec
    }

    /// The endpoint of a record read from the topic. Sealed values open
    /// only in the record they were sealed for: the same endpoint id and the
    /// same URL origin (so a writer of the topic cannot point an endpoint
    /// elsewhere and keep its secrets). Plaintext secrets are read only with
    /// [`KeyRing::accept_plaintext`].
    pub fn open_endpoint(&self, mut rec: EndpointRecord) -> Result<Endpoint, String> {
        let id = rec.id.clone();
        let url = herald_core::validate::url(&rec.url).map_err(|e| e.to_string())?;
        let origin = herald_core::endpoint::origin(&url);
        let sealed_key_id = sealed_under(&rec);
        match (rec.secrets.is_empty(), rec.sealed_secrets.is_empty()) {
            (false, false) => {
                return Err("secret: both plaintext and sealed secrets; refused".into())
            }
            (false, true) if !self.accept_plaintext => return Err(
                "secret: in plaintext, which this node refuses (secrets.accept_plaintext = false)"
                    .into(),
            ),
            _ => {}
        }
        if !rec.sealed_secrets.is_empty() {
            let opened: Result<Vec<String>, OpenError> = rec
                .sealed_secrets
                .iter()
                .enumerate()
                .map(|(i, v)| self.open(&secret_aad(&id, &origin, i), "secret", v))
                .collect();
            rec.secrets = opened.map_err(|e| e.to_string())?;
        }
        // A secret that does not parse would leave the endpoint signing with
        // nothing: refuse the record rather than send unsigned requests.
        for s in &rec.secrets {
            herald_signing::Secret::parse(s).map_err(|e| format!("secret: {e}"))?;
        }
        let sealed_headers = std::mem::take(&mut rec.sealed_headers);
        let mut ep = Endpoint::from_record(rec).map_err(|e| e.to_string())?;
        let mut opened = BTreeMap::new();
        for (name, v) in &sealed_headers {
            let value = self
                .open(
                    &header_aad(&id, &origin, name),
                    &format!("header {name:?}"),
                    v,
                )
                .map_err(|e| e.to_string())?;
            opened.insert(name.clone(), value);
        }
        ep.sealed_key_id = sealed_key_id;
        ep.sensitive_headers = opened.keys().cloned().collect();
        ep.headers.extend(opened);
        herald_core::validate::headers(ep.headers.iter()).map_err(|e| e.to_string())?;
        Ok(ep)
    }

    /// Whether `rec` holds anything not sealed under the active key (a
    /// plaintext secret, or a value under an older key).
    pub fn needs_reseal(&self, rec: &EndpointRecord) -> bool {
        !rec.secrets.is_empty()
            || rec
                .sealed_secrets
                .iter()
                .chain(rec.sealed_headers.values())
                .any(|v| v.key_id != self.active)
    }
}

/// The one key id every sealed value of `rec` uses; empty when a secret is
/// in plaintext, `*` for a mix.
fn sealed_under(rec: &EndpointRecord) -> String {
    if !rec.secrets.is_empty() {
        return String::new();
    }
    let mut ids = rec
        .sealed_secrets
        .iter()
        .chain(rec.sealed_headers.values())
        .map(|v| v.key_id.as_str());
    let first = ids.next().unwrap_or("");
    if ids.all(|id| id == first) {
        first.to_string()
    } else {
        "*".to_string()
    }
}

// Ids are [A-Za-z0-9._-], origins have no spaces, header names are HTTP
// tokens: a space separates the parts unambiguously.
fn secret_aad(id: &str, origin: &str, index: usize) -> String {
    format!("herald.endpoint {id} {origin} secret {index}")
}

fn header_aad(id: &str, origin: &str, name: &str) -> String {
    format!(
        "herald.endpoint {id} {origin} header {}",
        name.to_ascii_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD: &str = "whsec_b2xkb2xkb2xkb2xkb2xkb2xkb2xk";

    fn endpoint() -> Endpoint {
        let mut ep = Endpoint::from_record(EndpointRecord {
            id: "ep_1".into(),
            url: "https://example.com/h".into(),
            secrets: vec![SECRET.into(), OLD.into()],
            headers: [
                ("X-Tenant".to_string(), "acme".to_string()),
                (
                    "Authorization".to_string(),
                    "Bearer s3cr3t-token".to_string(),
                ),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        })
        .unwrap();
        ep.sensitive_headers.insert("Authorization".into());
        ep
    }

    fn ring(active: &str, ids: &[(&str, u8)]) -> KeyRing {
        KeyRing::new(
            active,
            ids.iter().map(|(id, b)| (id.to_string(), [*b; KEY_LEN])),
        )
        .unwrap()
    }

    fn bytes(rec: &EndpointRecord) -> Vec<u8> {
        prost::Message::encode_to_vec(rec)
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[test]
    fn sealed_record_holds_no_plaintext_and_opens_back() {
        let r = ring("k1", &[("k1", 1)]);
        let ep = endpoint();
        let rec = r.seal_endpoint(&ep);
        let raw = bytes(&rec);
        for secret in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "b2xkb2xkb2xkb2xkb2xkb2xkb2xk",
            "s3cr3t-token",
        ] {
            assert!(!contains(&raw, secret), "{secret} in the record");
        }
        assert!(contains(&raw, "acme"), "ordinary headers stay readable");
        assert!(!r.needs_reseal(&rec));
        let mut back = r.open_endpoint(rec).unwrap();
        assert_eq!(back.sealed_key_id, "k1");
        back.sealed_key_id.clear();
        assert_eq!(back, ep);
    }

    #[test]
    fn rotation_opens_old_and_new_and_reseals() {
        let old = ring("k1", &[("k1", 1)]);
        let rec = old.seal_endpoint(&endpoint());
        let both = ring("k2", &[("k1", 1), ("k2", 2)]);
        assert!(both.needs_reseal(&rec));
        let ep = both.open_endpoint(rec).unwrap();
        assert_eq!(ep.sealed_key_id, "k1");
        let resealed = both.seal_endpoint(&ep);
        assert!(!both.needs_reseal(&resealed));
        let only_new = ring("k2", &[("k2", 2)]);
        let mut back = only_new.open_endpoint(resealed).unwrap();
        assert_eq!(back.sealed_key_id, "k2");
        back.sealed_key_id.clear();
        assert_eq!(back, endpoint());
    }

    #[test]
    fn unknown_keys_tampering_and_moved_values_do_not_open() {
        let r = ring("k1", &[("k1", 1)]);
        let rec = r.seal_endpoint(&endpoint());
        let e = ring("k9", &[("k9", 9)])
            .open_endpoint(rec.clone())
            .unwrap_err();
        assert!(e.contains("\"k1\""), "{e}");
        // Same id, different key bytes.
        assert!(ring("k1", &[("k1", 7)]).open_endpoint(rec.clone()).is_err());
        // A flipped bit.
        let mut t = rec.clone();
        t.sealed_secrets[0].ciphertext[0] ^= 1;
        assert!(r.open_endpoint(t).unwrap_err().contains("does not open"));
        // Moved to another endpoint.
        let mut other = r.seal_endpoint(&{
            let mut e = endpoint();
            e.id = "ep_2".into();
            e
        });
        other.sealed_secrets = rec.sealed_secrets.clone();
        assert!(r.open_endpoint(other).is_err());
        // A short nonce never panics.
        let mut t = rec;
        t.sealed_secrets[0].nonce.truncate(3);
        assert!(r.open_endpoint(t).is_err());
    }

    #[test]
    fn a_record_pointed_elsewhere_does_not_open() {
        let r = ring("k1", &[("k1", 1)]);
        let mut rec = r.seal_endpoint(&endpoint());
        rec.url = "https://attacker.example/h".into();
        let e = r.open_endpoint(rec.clone()).unwrap_err();
        assert!(e.contains("does not open"), "{e}");
        // Another port or scheme of the same host is another origin too.
        rec.url = "http://example.com/h".into();
        assert!(r.open_endpoint(rec.clone()).is_err());
        // Another path on the same origin is the same receiver.
        rec.url = "https://example.com/other".into();
        assert!(r.open_endpoint(rec).is_ok());
    }

    #[test]
    fn plaintext_records_are_refused_unless_accepted() {
        let strict = ring("k1", &[("k1", 1)]);
        let e = strict.open_endpoint(endpoint().to_record()).unwrap_err();
        assert!(e.contains("accept_plaintext"), "{e}");
        let mut mixed = strict.seal_endpoint(&endpoint());
        mixed.secrets.push(SECRET.into());
        assert!(strict.open_endpoint(mixed).unwrap_err().contains("both"));
        let r = ring("k1", &[("k1", 1)]).accept_plaintext(true);
        let rec = endpoint().to_record();
        assert!(r.needs_reseal(&rec));
        let ep = r.open_endpoint(rec).unwrap();
        assert_eq!(ep.secrets[0], SECRET);
        assert_eq!(ep.sealed_key_id, "", "plaintext");
    }

    #[test]
    fn a_secret_that_does_not_parse_refuses_the_record() {
        let r = ring("k1", &[("k1", 1)]);
        let mut ep = endpoint();
        ep.secrets = vec!["whsec_abc".into()];
        let e = r.open_endpoint(r.seal_endpoint(&ep)).unwrap_err();
        assert!(e.starts_with("secret:"), "{e}");
    }

    #[test]
    fn the_largest_endpoint_the_api_accepts_fits_a_kafka_record() {
        use herald_core::validate as v;
        let long_secret = format!("whsec_{}==", "A".repeat(86)); // 64 bytes of key
        let mut ep = endpoint();
        ep.url = format!("https://example.com/{}", "p".repeat(v::MAX_URL_LEN - 20))
            .parse()
            .unwrap();
        ep.description = "d".repeat(v::MAX_DESCRIPTION_LEN);
        ep.secrets = vec![long_secret.clone(), long_secret];
        ep.headers = (0..v::MAX_CUSTOM_HEADERS)
            .map(|i| {
                let name = format!("X-{i:03}-{}", "n".repeat(v::MAX_HEADER_NAME_LEN - 6));
                (name, "v".repeat(v::MAX_HEADER_VALUE_LEN))
            })
            .collect();
        ep.sensitive_headers = ep.headers.keys().take(16).cloned().collect();
        ep.retry_schedule = vec![
            std::time::Duration::from_millis(v::MAX_RETRY_DELAY_MS);
            v::MAX_RETRY_SCHEDULE_LEN
        ];
        let r = ring("k1", &[("k1", 1)]);
        let bytes = prost::Message::encode_to_vec(&r.seal_endpoint(&ep));
        // librdkafka's default message.max.bytes is 1,000,000.
        assert!(bytes.len() < 200_000, "{} bytes", bytes.len());
        let back = r.open_endpoint(prost::Message::decode(bytes.as_slice()).unwrap());
        assert!(back.is_ok(), "{back:?}");
    }

    #[test]
    fn debug_shows_ids_not_keys() {
        let r = ring("k1", &[("k1", 0xab)]);
        let text = format!("{r:?}");
        assert!(text.contains("k1") && !text.contains("171"), "{text}");
    }
}
