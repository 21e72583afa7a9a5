//! nsnet's firewall: one nftables table, `inet nsnet`, rendered from the
//! model and applied as one atomic `nft -j -f -` transaction. No other
//! module speaks to nftables, and no other table, chain or policy is ever
//! read or changed.

mod rules;

pub use rules::{render, update, TABLE};

use std::io::{self, Write};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the nft command is not installed (Debian/Ubuntu: apt-get install nftables)")]
    NftMissing,
    #[error("running nft: {0}")]
    Spawn(#[source] io::Error),
    #[error("nft rejected the ruleset for table inet {TABLE}: {0}")]
    Rejected(String),
}

/// Applies a transaction produced by `render`.
pub fn apply(transaction: &serde_json::Value) -> Result<(), Error> {
    let mut child = Command::new(nft_binary())
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NftMissing,
            _ => Error::Spawn(e),
        })?;
    let body = serde_json::to_vec(transaction).expect("JSON values serialize");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).map_err(Error::Spawn)?;
    }
    let out = child.wait_with_output().map_err(Error::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Rejected(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// `NSNET_NFT` overrides the binary (tests use it to simulate a failing
/// firewall); the default is `nft` from `PATH`.
fn nft_binary() -> String {
    std::env::var("NSNET_NFT").unwrap_or_else(|_| "nft".to_string())
}

fn run_nft(args: &[&str]) -> Result<String, Error> {
    let out = Command::new(nft_binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NftMissing,
            _ => Error::Spawn(e),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Rejected(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// nsnet's table as nft lists it, or `None` when it does not exist. Only
/// this table is ever listed in full.
pub fn list_table() -> Result<Option<serde_json::Value>, Error> {
    list(&["-j", "list", "table", "inet", TABLE])
}

/// Whether nsnet's table still has the chains and rules `state` calls for
/// (map elements are not listed: the answer costs the same for 10 or
/// 10,000 published ports). Element-only updates rely on it.
pub fn intact(state: &crate::model::State) -> Result<bool, Error> {
    let live = list(&["-t", "-j", "list", "table", "inet", TABLE])?;
    Ok(rules::structure_drift(state, live.as_ref()).is_empty())
}

fn list(args: &[&str]) -> Result<Option<serde_json::Value>, Error> {
    match run_nft(args) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Rejected(format!("unreadable nft output: {e}"))),
        Err(Error::Rejected(msg)) if msg.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Base chains of *other* tables on the forward hook whose policy is drop:
/// they would drop nsnet's forwarded traffic whatever nsnet accepts (a
/// `FORWARD` policy of `DROP` left by Docker, for instance). Only chain
/// headers are listed, never other tables' rules, and nothing is changed.
pub fn foreign_forward_drops() -> Result<Vec<String>, Error> {
    let text = run_nft(&["-j", "list", "chains"])?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Rejected(format!("unreadable nft output: {e}")))?;
    Ok(rules::foreign_forward_drops(&v))
}

pub use rules::drift;
