//! Commands that make key material on this machine, with no server:
//! `herald token create` (an API token, printed once, and the config entry
//! that holds only its hash) and `herald secrets generate-key` (a master
//! key for `[[secrets.keys]]`); `herald secrets rotate-master` asks a
//! server to re-seal.

use herald_auth::Scopes;

/// `herald token create`
#[derive(clap::Args, Debug)]
pub struct TokenCreateArgs {
    /// Who will hold the token (shown in logs and errors; e.g. `billing`).
    #[arg(long)]
    pub name: String,
    /// Comma-separated scopes: publish, endpoints:read, endpoints:write,
    /// dlq, attempts:read, admin.
    #[arg(long, value_delimiter = ',', required = true)]
    pub scopes: Vec<String>,
}

/// `herald token …`
#[derive(clap::Subcommand, Debug)]
pub enum TokenCmd {
    /// Make a new API token: prints it once, and the [[auth.tokens]] entry
    /// (its hash, never the token) to add to every ingest node's config.
    Create(TokenCreateArgs),
}

/// `herald secrets …`
#[derive(clap::Subcommand, Debug)]
pub enum SecretsCmd {
    /// Print a new random master key (base64) for a [[secrets.keys]] file.
    GenerateKey,
    /// Re-seal every endpoint's secrets under the server's active master
    /// key (step 2 of a master-key rotation; needs the `admin` scope).
    RotateMaster,
}

/// Runs `herald token …`.
pub fn run_token(cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create(args) => {
            print!("{}", token_create(&args)?);
            Ok(())
        }
    }
}

/// Runs `herald secrets …`.
pub async fn run_secrets(opts: &crate::client::ClientOpts, cmd: SecretsCmd) -> anyhow::Result<()> {
    match cmd {
        SecretsCmd::GenerateKey => {
            println!("{}", herald_registry::keys::generate_key());
            Ok(())
        }
        SecretsCmd::RotateMaster => crate::client::run_reseal(opts).await,
    }
}

/// The text `herald token create` prints.
fn token_create(args: &TokenCreateArgs) -> anyhow::Result<String> {
    let name = args.name.trim();
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        anyhow::bail!(
            "--name must be non-empty, without quotes, backslashes or control characters"
        );
    }
    let scopes = Scopes::parse(&args.scopes).map_err(|e| anyhow::anyhow!("--scopes: {e}"))?;
    if scopes.is_empty() {
        anyhow::bail!("--scopes: name at least one scope");
    }
    let (token, hash) = herald_auth::token::generate();
    let list: Vec<String> = scopes.iter().map(|s| format!("{:?}", s.name())).collect();
    Ok(format!(
        "token (shown only now; give it to {name}, e.g. as HERALD_TOKEN):\n\
         {token}\n\n\
         add to the config of every ingest node:\n\
         [[auth.tokens]]\n\
         name = \"{name}\"\n\
         hash = \"{hash}\"\n\
         scopes = [{}]\n",
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_auth::token::TokenHash;

    #[test]
    fn printed_entry_matches_the_printed_token() {
        let out = token_create(&TokenCreateArgs {
            name: "billing".into(),
            scopes: vec!["publish".into(), "endpoints:read".into()],
        })
        .unwrap();
        let token = out.lines().nth(1).unwrap();
        assert!(token.starts_with("hrld_"), "{out}");
        let toml_part = &out[out.find("[[auth.tokens]]").unwrap()..];
        let parsed: toml::Value = toml::from_str(toml_part).unwrap();
        let entry = &parsed["auth"]["tokens"][0];
        assert_eq!(entry["name"].as_str(), Some("billing"));
        assert_eq!(
            TokenHash::parse(entry["hash"].as_str().unwrap()).unwrap(),
            TokenHash::of(token)
        );
        assert_eq!(entry["scopes"].as_array().unwrap().len(), 2, "{toml_part}");
        assert!(
            !toml_part.contains(token),
            "the config entry never holds the token"
        );
    }

    #[test]
    fn bad_names_and_scopes_are_refused() {
        let make = |name: &str, scopes: &[&str]| {
            token_create(&TokenCreateArgs {
                name: name.into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
            })
        };
        assert!(make("", &["publish"]).is_err());
        assert!(make("a\"b", &["publish"]).is_err());
        let e = make("ok", &["root"]).unwrap_err().to_string();
        assert!(e.contains("--scopes") && e.contains("root"), "{e}");
    }
}
