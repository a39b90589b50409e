//! `govledger token new`: a random API bearer token written to a file only its
//! owner may read, and the `[[auth.tokens]]` entry for the config (the token's
//! SHA-256 — the config never holds a token).

use anyhow::Context as _;

use super::args::{TokenArgs, TokenCmd};
use crate::auth::identify::{new_token, token_sha256_hex, write_private};

pub fn token(a: TokenArgs) -> anyhow::Result<()> {
    match a.cmd {
        TokenCmd::New {
            principal,
            roles,
            out,
        } => {
            if principal.trim().is_empty() || principal.chars().any(char::is_control) {
                anyhow::bail!("PRINCIPAL must be a printable name, e.g. alice or siem-prod");
            }
            let token = new_token();
            write_private(&out, &format!("{token}\n"))
                .with_context(|| format!("cannot create {} (it must not exist)", out.display()))?;
            let roles: Vec<String> = roles
                .iter()
                .map(|r| format!("{:?}", crate::auth::Role::from(*r).name()))
                .collect();
            eprintln!(
                "token written to {} (mode 0600); give it to {principal} only",
                out.display()
            );
            println!(
                "[[auth.tokens]]\nprincipal = {principal:?}\nsha256 = \"{}\"\nroles = [{}]",
                token_sha256_hex(&token),
                roles.join(", ")
            );
            Ok(())
        }
    }
}
