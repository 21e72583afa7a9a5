//! nsnet's firewall: one nftables table, `inet nsnet`, rendered from the
//! model (`rules`, pure) and applied as one atomic `nft -j -f -` transaction
//! (this module, the backend). No other module speaks to nftables, and no
//! other table, chain or policy is ever read or changed.
//!
//! `rules` imports only `model`; the backend also the kernel layer's
//! nf_tables netlink reader. Writes reach the backend through
//! `apply::Kernel`, reads through `check::Probe`: both have fakes.

pub mod docker_user;
pub mod drift;
pub mod rules;
pub mod vxlan_guard;
pub mod walk;

pub use rules::{Kind, Transaction, TABLE};

use std::io;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the nft command is not installed (Debian/Ubuntu: apt-get install nftables)")]
    NftMissing,
    #[error("running nft")]
    Spawn(#[source] io::Error),
    #[error("nft rejected the ruleset for table inet {TABLE}: {0}")]
    Rejected(String),
}

/// Applies a transaction produced by `render`. nft reads it from an
/// in-memory file rather than a pipe: an nft that exits early (or a
/// stand-in that fails, as in the tests) then cannot kill nsnet with
/// SIGPIPE, which nsnet keeps at its default so that `nsnet ... | head`
/// ends quietly.
pub fn apply(transaction: &serde_json::Value) -> Result<(), Error> {
    let body = serde_json::to_vec(transaction).expect("JSON values serialize");
    let input = crate::kernel::memory_file(&body).map_err(Error::Spawn)?;
    let child = Command::new(nft_binary())
        .args(["-j", "-f", "-"])
        .stdin(Stdio::from(input))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
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

fn spawn_error(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound => Error::NftMissing,
        _ => Error::Spawn(e),
    }
}

fn run_nft(args: &[&str]) -> Result<String, Error> {
    let out = Command::new(nft_binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_error)?;
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

/// Whether nsnet's table still has the rules `state` calls for, counted
/// per chain. Element-only updates rely on it; a table that was flushed or
/// edited is replaced whole instead.
///
/// This reads the rules over nf_tables netlink rather than with `nft list`:
/// nft 1.0.6 fetches every map element for any listing that includes rules
/// (130 ms at 10,000 published ports), while the kernel's rule dump costs
/// the same for 10 or 10,000 ports. It only reads, and only this table.
pub fn intact(state: &crate::model::State) -> Result<bool, Error> {
    let live = rule_counts().map_err(Error::Spawn)?;
    Ok(live == Some(rules::rule_counts(state)))
}

/// Rules per chain of nsnet's table, `None` when the table does not exist.
fn rule_counts() -> io::Result<Option<std::collections::BTreeMap<String, usize>>> {
    use crate::kernel::nfnetlink::{attr, find, message, NfSocket, NLM_F_DUMP};
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_GETRULE: u16 = 7;
    const NFPROTO_INET: u8 = 1;
    const NFTA_RULE_TABLE: u16 = 1;
    const NFTA_RULE_CHAIN: u16 = 2;
    let mut socket = NfSocket::open()?;
    let filter = attr(NFTA_RULE_TABLE, format!("{TABLE}\0").as_bytes());
    let req = message(
        NFNL_SUBSYS_NFTABLES,
        NFT_MSG_GETRULE,
        NLM_F_DUMP,
        1,
        NFPROTO_INET,
        &filter,
    );
    let mut counts = std::collections::BTreeMap::new();
    let mut in_table = false;
    let result = socket.dump(&req, |body| {
        let table = find(body, NFTA_RULE_TABLE)
            .map(|(t, _)| t.split(|b| *b == 0).next().unwrap_or_default());
        if table != Some(TABLE.as_bytes()) {
            return;
        }
        in_table = true;
        if let Some((chain, _)) = find(body, NFTA_RULE_CHAIN) {
            let name = String::from_utf8_lossy(chain.split(|b| *b == 0).next().unwrap_or_default())
                .into_owned();
            *counts.entry(name).or_insert(0) += 1;
        }
    });
    match result {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    }
    if !in_table && !table_exists()? {
        return Ok(None);
    }
    Ok(Some(counts))
}

/// Whether the table exists (an empty table has no rules to dump).
fn table_exists() -> io::Result<bool> {
    use crate::kernel::nfnetlink::{attr, message, NfSocket, NLM_F_ACK};
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_GETTABLE: u16 = 1;
    const NFTA_TABLE_NAME: u16 = 1;
    let mut socket = NfSocket::open()?;
    let req = message(
        NFNL_SUBSYS_NFTABLES,
        NFT_MSG_GETTABLE,
        NLM_F_ACK,
        1,
        1,
        &attr(NFTA_TABLE_NAME, format!("{TABLE}\0").as_bytes()),
    );
    Ok(socket.request(&req)? != libc::ENOENT)
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

/// The whole ruleset, every table's chains, rules and sets (read only):
/// what `trace` walks a packet through.
pub fn ruleset() -> Result<serde_json::Value, Error> {
    Ok(list(&["-j", "list", "ruleset"])?.unwrap_or_else(|| serde_json::json!({"nftables": []})))
}

/// Base chains of *other* tables on the forward hook whose policy is drop:
/// they would drop nsnet's forwarded traffic whatever nsnet accepts (a
/// `FORWARD` policy of `DROP` left by Docker, for instance). Only chain
/// headers are listed, never other tables' rules, and nothing is changed.
pub fn foreign_forward_drops() -> Result<Vec<rules::ForeignDrop>, Error> {
    let text = run_nft(&["-j", "list", "chains"])?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Rejected(format!("unreadable nft output: {e}")))?;
    Ok(rules::foreign_forward_drops(&v))
}
