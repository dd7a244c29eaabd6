//! `[auth]` and `[secrets]`: who may call the gRPC API, and the master keys
//! that encrypt endpoint secrets in the registry topic.
//!
//! Only references to secret material live here: API tokens by their
//! SHA-256 hashes, master keys by the file or environment variable that
//! holds them. Reading and checking them is `herald-auth`'s and
//! `herald-registry`'s job at node start, so a bad value names its key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[auth]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Serve every RPC without credentials. Only for a network where every
    /// caller is trusted; `herald dev` sets it. A node whose gRPC API runs
    /// with no tokens and `disabled = false` refuses to start.
    pub disabled: bool,
    /// API tokens, by hash (`herald token create` prints an entry).
    pub tokens: Vec<TokenConfig>,
    /// Client certificates accepted instead of a token (mutual TLS; needs
    /// `grpc.tls.client_ca_file`).
    pub clients: Vec<ClientCertConfig>,
}

/// One `[[auth.clients]]` entry: a client certificate, verified against
/// `grpc.tls.client_ca_file`, mapped to scopes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClientCertConfig {
    /// Who the certificate belongs to (logs, errors, idempotency scoping).
    pub name: String,
    /// A DNS name the certificate's subject alternative names must cover.
    pub dns_name: Option<String>,
    /// Or the SHA-256 of the certificate (DER), `sha256:<hex>`: pins one
    /// certificate exactly.
    pub cert_sha256: Option<String>,
    /// What it may do (as for tokens).
    pub scopes: Vec<String>,
    /// Events per second it may publish (0 = no limit).
    pub publish_per_second: u32,
    /// Events at once above the rate (0 = `publish_per_second`).
    pub publish_burst: u32,
}

/// `[grpc.tls]`: TLS for the gRPC API.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcTlsConfig {
    /// PEM certificate chain of the server.
    pub cert_file: PathBuf,
    /// PEM private key of the server.
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates must chain to; set it
    /// to accept `[[auth.clients]]` (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// Refuse connections without a client certificate (otherwise a
    /// client may present a token instead).
    pub require_client_cert: bool,
}

/// One `[[auth.tokens]]` entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds the token, for logs and idempotency scoping (e.g. `billing`).
    pub name: String,
    /// `sha256:<64 hex digits>` of the token; never the token itself.
    pub hash: String,
    /// What the token may do: `publish`, `endpoints:read`,
    /// `endpoints:write`, `dlq`, `attempts:read`, `admin` (everything).
    pub scopes: Vec<String>,
    /// Events per second this token may publish (0 = no limit).
    pub publish_per_second: u32,
    /// Events it may publish at once above the rate (0 = `publish_per_second`).
    pub publish_burst: u32,
}

/// `[secrets]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// The id of the key new and rewritten secrets are sealed with.
    /// Empty: the only key configured.
    pub active_key: String,
    /// Master keys this node can open secrets with: the active one and,
    /// during a rotation, the previous ones.
    pub keys: Vec<MasterKeyConfig>,
    /// How long a rotated-out endpoint secret keeps signing beside the new
    /// one, so receivers can switch without a gap.
    #[serde(with = "crate::duration::serde_one")]
    pub rotation_grace: std::time::Duration,
    /// With no `keys`, seal with a random key made at start and lost at
    /// exit. `herald dev` sets it (its broker forgets everything anyway);
    /// anywhere else, secrets would become unreadable at the next restart.
    pub ephemeral_key: bool,
    /// Read endpoint records whose secrets are in plaintext (written before
    /// sealing existed). Off: a record without sealed secrets is skipped, so
    /// nobody can add a usable endpoint to the topic without a master key.
    /// Turn it on only to migrate, run `herald secrets rotate-master`, and
    /// turn it off again.
    pub accept_plaintext: bool,
}

/// One `[[secrets.keys]]` entry: where a 32-byte master key is read from
/// (base64, as `herald secrets generate-key` prints it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MasterKeyConfig {
    /// The key id stored beside every secret it seals (1 to 32 of `A-Za-z0-9._-`).
    pub id: String,
    /// A file holding the key.
    pub file: Option<PathBuf>,
    /// Or an environment variable holding the key.
    pub env: Option<String>,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            active_key: String::new(),
            keys: Vec::new(),
            rotation_grace: std::time::Duration::from_secs(86_400),
            ephemeral_key: false,
            accept_plaintext: false,
        }
    }
}
