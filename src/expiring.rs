//! `notarium expiring` (part of the binary, not the library): arguments
//! and output; the listing itself is `notarium::repo::expiry`.

use std::path::PathBuf;

use notarium::repo::expiry::{ExpiringRole, expiring_roles, parse_window};
use notarium::store::Store;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(clap::Args)]
pub struct ExpiringArgs {
    /// The window: a whole number and a unit, s, m, h, d or w (90d, 12h,
    /// 2w). Roles already expired are listed too.
    #[arg(long, default_value = "90d", value_parser = check_window)]
    pub within: String,
    /// `text` (one line per role) or `json` (an array of objects).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// The server's configuration file (for its database).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Database file, sqlite: or postgres:// URL (overrides the configuration).
    #[arg(long)]
    pub db_url: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Refuses a bad window as a usage error (exit status 2, clap's message).
fn check_window(text: &str) -> Result<String, String> {
    parse_window(text).map(|_| text.to_string())
}

pub async fn list<S: Store>(store: &S, args: &ExpiringArgs) -> Result<String, String> {
    let within = parse_window(&args.within).map_err(|e| format!("--within {e}"))?;
    let now = OffsetDateTime::now_utc();
    let roles = expiring_roles(store, now, within)
        .await
        .map_err(|e| format!("cannot read the expiry report: {e}"))?;
    match args.output {
        Output::Json => serde_json::to_string_pretty(&roles).map_err(|e| e.to_string()),
        Output::Text if roles.is_empty() => Ok(format!(
            "no client-signed role expires within {}",
            args.within.trim()
        )),
        Output::Text => Ok(roles.iter().map(line).collect::<Vec<_>>().join("\n")),
    }
}

/// `<expires> <EXPIRED|       > <gun> <role> v<version>  signed by <keys>`
fn line(role: &ExpiringRole) -> String {
    let expires = role.role.expires.format(&Rfc3339).unwrap_or_default();
    let state = if role.expired { "EXPIRED" } else { "expires" };
    let signers: Vec<String> = role
        .signed_by
        .iter()
        .map(|s| {
            let mut text = s.key_id.clone();
            if let Some(cn) = &s.common_name {
                text.push_str(&format!(" (CN={cn})"));
            }
            if s.server {
                text.push_str(" (server)");
            }
            text
        })
        .collect();
    let signers = if signers.is_empty() {
        "unknown keys".to_string()
    } else {
        signers.join(", ")
    };
    format!(
        "{state} {expires}  {}  {} v{}  signed by {signers}",
        role.role.gun, role.role.role, role.role.version
    )
}
