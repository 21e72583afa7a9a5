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
