//! nsnet's rules in Docker's `DOCKER-USER` chain. dockerd sets iptables'
//! FORWARD policy to DROP and turns br_netfilter on, so bridged and
//! forwarded traffic of nsnet's bridges meets Docker's chains too, and an
//! accept in nsnet's own table does not override a drop there. Docker
//! documents `DOCKER-USER` as the place for the rules of others: nsnet
//! keeps one chain of its own, `NSNET-DOCKER`, jumped to from there, and
//! written whole with `iptables-restore --noflush` (one transaction; the
//! interface Docker itself documents for its chains). It lets nsnet's
//! bridges pass Docker's chains, and nsnet's table decide as everywhere
//! else, but keeps them apart from Docker's own bridges both ways
//! (Docker's rules accept traffic from its bridges to any other).

use std::io::Write;
use std::process::{Command, Stdio};

/// nsnet's chain in iptables' filter table.
pub const CHAIN: &str = "NSNET-DOCKER";
/// Docker's chain for the rules of others, first in its FORWARD.
pub const DOCKER_USER: &str = "DOCKER-USER";

/// What iptables has now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placed {
    /// DOCKER-USER jumps to nsnet's chain.
    pub jump: bool,
    /// nsnet's chain's rules, as `iptables -S` prints them.
    pub rules: Vec<String>,
}

impl Placed {
    /// Whether it is what `bridges` need.
    pub fn serves(&self, bridges: &[&str]) -> bool {
        self.jump && self.rules == rules(bridges)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running {program}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("{program} {args} failed: {stderr}")]
    Failed {
        program: &'static str,
        args: String,
        stderr: String,
    },
}

/// Docker's bridges: docker0, docker_gwbridge and `br-<id>` of its user
/// networks (iptables' `+` matches a prefix).
const DOCKER_BRIDGES: [&str; 2] = ["docker+", "br-+"];

/// The rules of nsnet's chain for `bridges`, in `iptables -S` form.
pub fn rules(bridges: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |spec: String| out.push(format!("-A {CHAIN} {spec}"));
    for b in bridges {
        // Replies, and published ports (DNAT), whoever asks: nsnet's table
        // decides who reaches what.
        add(format!(
            "-i {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        ));
        add(format!(
            "-o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        ));
        add(format!("-o {b} -m conntrack --ctstate DNAT -j ACCEPT"));
        for d in DOCKER_BRIDGES {
            add(format!("-i {b} -o {d} -j DROP"));
            add(format!("-i {d} -o {b} -j DROP"));
        }
        add(format!("-i {b} -j ACCEPT"));
        add(format!("-o {b} -j ACCEPT"));
    }
    out
}

fn program(v6: bool, restore: bool) -> &'static str {
    match (v6, restore) {
        (false, false) => "iptables",
        (true, false) => "ip6tables",
        (false, true) => "iptables-restore",
        (true, true) => "ip6tables-restore",
    }
}

fn run(v6: bool, args: &[&str]) -> Result<Option<String>, Error> {
    let program = program(v6, false);
    let out = Command::new(program)
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn { program, source })?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// What iptables (`v6`: ip6tables) has; `None` when there is no
/// DOCKER-USER chain (no dockerd, or one that leaves this family alone),
/// or no iptables at all.
pub fn read(v6: bool) -> Result<Option<Placed>, Error> {
    let docker_user = match run(v6, &["-S", DOCKER_USER]) {
        Ok(Some(text)) => text,
        Ok(None) | Err(Error::Spawn { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let jump = docker_user
        .lines()
        .any(|l| l == format!("-A {DOCKER_USER} -j {CHAIN}"));
    let rules = run(v6, &["-S", CHAIN])?
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(str::to_string)
        .collect();
    Ok(Some(Placed { jump, rules }))
}

/// Makes nsnet's chain hold exactly `rules` and DOCKER-USER jump to it
/// first; with no rules, removes both.
pub fn write(v6: bool, rules: &[String]) -> Result<(), Error> {
    let jump = ["-C", DOCKER_USER, "-j", CHAIN];
    let jumps = run(v6, &jump)?.is_some();
    if rules.is_empty() {
        if jumps {
            checked(v6, &["-D", DOCKER_USER, "-j", CHAIN])?;
        }
        if run(v6, &["-S", CHAIN])?.is_some() {
            checked(v6, &["-F", CHAIN])?;
            checked(v6, &["-X", CHAIN])?;
        }
        return Ok(());
    }
    // Declared with `:`, the chain is made or emptied, then filled: one
    // transaction, other chains untouched (--noflush).
    let mut input = format!("*filter\n:{CHAIN} - [0:0]\n");
    for r in rules {
        input.push_str(r);
        input.push('\n');
    }
    input.push_str("COMMIT\n");
    restore(v6, &input)?;
    if !jumps {
        checked(v6, &["-I", DOCKER_USER, "1", "-j", CHAIN])?;
    }
    Ok(())
}

fn checked(v6: bool, args: &[&str]) -> Result<(), Error> {
    match run(v6, args)? {
        Some(_) => Ok(()),
        None => Err(Error::Failed {
            program: program(v6, false),
            args: args.join(" "),
            stderr: "refused".into(),
        }),
    }
}

fn restore(v6: bool, input: &str) -> Result<(), Error> {
    let program = program(v6, true);
    let mut child = Command::new(program)
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn { program, source })?;
    let written = child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes());
    let out = child
        .wait_with_output()
        .map_err(|source| Error::Spawn { program, source })?;
    if !out.status.success() || written.is_err() {
        return Err(Error::Failed {
            program,
            args: "--noflush".into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bridge_passes_but_stays_apart_from_docker_s() {
        let r = rules(&["dk-0123456789ab"]);
        let pos = |s: &str| r.iter().position(|l| l.contains(s)).unwrap();
        // Replies and published ports first, Docker's bridges dropped
        // before the accept of everything else.
        assert!(pos("ESTABLISHED") < pos("-o docker+ -j DROP"));
        assert!(pos("DNAT") < pos("-i docker+ -o dk-0123456789ab -j DROP"));
        assert!(pos("-i br-+ -o dk-0123456789ab -j DROP") < pos("-o dk-0123456789ab -j ACCEPT"));
        assert!(r.iter().all(|l| l.starts_with("-A NSNET-DOCKER ")));
        assert!(rules(&[]).is_empty());
        let placed = Placed {
            jump: true,
            rules: r.clone(),
        };
        assert!(placed.serves(&["dk-0123456789ab"]));
        assert!(!placed.serves(&["dk-0123456789ab", "n2"]));
        assert!(!Placed {
            jump: false,
            rules: r
        }
        .serves(&["dk-0123456789ab"]));
    }
}
