//! Interface and network names: validation and the derivation of host-side
//! veth names.

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;
/// Longest network name: generous, but short enough for tables and files.
pub const NETWORK_NAME_MAX: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {name:?}: {reason}")]
pub struct InvalidName {
    pub what: &'static str,
    pub name: String,
    pub reason: String,
}

fn invalid(what: &'static str, name: &str, reason: impl Into<String>) -> InvalidName {
    InvalidName {
        what,
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Checks an interface name the way the kernel's `dev_valid_name` does.
pub fn validate_ifname(name: &str) -> Result<(), InvalidName> {
    const WHAT: &str = "interface name";
    if name.is_empty() {
        return Err(invalid(WHAT, name, "must not be empty"));
    }
    if name.len() > IFNAME_MAX {
        return Err(invalid(
            WHAT,
            name,
            format!(
                "{} bytes long, the kernel allows at most {IFNAME_MAX}",
                name.len()
            ),
        ));
    }
    if name == "." || name == ".." {
        return Err(invalid(WHAT, name, "must not be . or .."));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(invalid(WHAT, name, format!("must not contain {c:?}")));
    }
    Ok(())
}

/// A DNS name (an alias, a search domain): dot-separated labels of
/// letters, digits and `-`, none empty, longer than 63 or starting or
/// ending with `-`; 253 characters at most. Returned in lower case.
pub fn validate_domain(name: &str) -> Result<String, InvalidName> {
    let n = name.trim_end_matches('.');
    if n.is_empty() || n.len() > 253 {
        return Err(invalid("DNS name", name, "must have 1 to 253 characters"));
    }
    for label in n.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(invalid(
                "DNS name",
                name,
                format!("label {label:?} must be 1-63 letters, digits or '-', not starting or ending with '-'"),
            ));
        }
    }
    Ok(n.to_ascii_lowercase())
}

/// Network names: letters, digits, `_`, `-`, `.`, starting with a letter or
/// digit. They name state entries and appear in firewall comments.
pub fn validate_network_name(name: &str) -> Result<(), InvalidName> {
    const WHAT: &str = "network name";
    if name.is_empty() {
        return Err(invalid(WHAT, name, "must not be empty"));
    }
    if name.len() > NETWORK_NAME_MAX {
        return Err(invalid(
            WHAT,
            name,
            format!("longer than {NETWORK_NAME_MAX} bytes"),
        ));
    }
    if !name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        return Err(invalid(WHAT, name, "must start with a letter or digit"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(invalid(
            WHAT,
            name,
            format!("must not contain {c:?} (letters, digits, _ - . only)"),
        ));
    }
    Ok(())
}

/// FNV-1a: a small stable hash, so derived names and MACs are the same on
/// every run and every build.
pub fn stable_hash(parts: &[&str]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// The host-side veth name of an attachment: `ve-<prefix>-<hash>`.
///
/// The tutorial's `veth-$namespace` breaks as soon as the namespace name is
/// longer than 10 bytes and collides when one namespace joins two networks.
/// This name always fits 15 bytes and is derived from (network, namespace,
/// interface): a 4-character prefix of the namespace name keeps it readable,
/// 28 hash bits keep names that share that prefix apart (500 of them
/// collide with odds of 1 in 2,000). Namespaces given as paths (CNI's
/// `/run/netns/netns-<uuid>`, `/proc/PID/ns/net`) share their prefixes, so
/// they get 48 hash bits and no prefix.
pub fn host_veth_name(network: &str, namespace: &str, ifname: &str) -> String {
    let h1 = u64::from(stable_hash(&[network, namespace, ifname]));
    let h2 = u64::from(stable_hash(&[ifname, namespace, network, "2"]));
    let wide = (h1 << 32) | h2;
    let prefix: String = namespace
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(4)
        .collect();
    let name = if namespace.contains('/') || prefix.is_empty() {
        format!("ve-{:012x}", wide & 0xffff_ffff_ffff)
    } else {
        format!("ve-{prefix}-{:07x}", wide & 0xfff_ffff)
    };
    debug_assert!(name.len() <= IFNAME_MAX);
    name
}

/// A locally administered unicast MAC derived from a name, so that a
/// bridge keeps the same MAC across re-creations.
pub fn derived_mac(parts: &[&str]) -> [u8; 6] {
    let a = stable_hash(parts).to_be_bytes();
    let b = stable_hash(&[&parts.join("\0"), "mac"]).to_be_bytes();
    // 0x02: locally administered, unicast.
    [0x02, a[0], a[1], a[2], a[3], b[0]]
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`; refuses multicast and all-zero addresses,
/// which no interface can use.
pub fn parse_mac(s: &str) -> Result<[u8; 6], InvalidName> {
    const WHAT: &str = "MAC address";
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(invalid(
            WHAT,
            s,
            "expected six hex bytes like 02:42:ac:11:00:02",
        ));
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(invalid(
                WHAT,
                s,
                "expected six hex bytes like 02:42:ac:11:00:02",
            ));
        }
        mac[i] = u8::from_str_radix(p, 16)
            .map_err(|_| invalid(WHAT, s, format!("{p:?} is not a hex byte")))?;
    }
    if mac[0] & 1 == 1 {
        return Err(invalid(WHAT, s, "is a multicast address"));
    }
    if mac == [0; 6] {
        return Err(invalid(WHAT, s, "is all zeros"));
    }
    Ok(mac)
}

/// The candidate closest to `name` by edit distance, when it is close
/// enough to be a likely typo (at most a third of the name's length, and
/// at least one edit allowed).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a String>) -> Option<String> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c.clone())
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_the_closest_name() {
        let names: Vec<String> = ["mydocker0", "lab", "web-db"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(closest("mydocker1", &names).as_deref(), Some("mydocker0"));
        assert_eq!(closest("mydokcer0", &names).as_deref(), Some("mydocker0"));
        assert_eq!(closest("lb", &names).as_deref(), Some("lab"));
        assert_eq!(closest("zzz", &names), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
    use proptest::prelude::*;

    #[test]
    fn host_names_fit_and_are_stable() {
        let a = host_veth_name("mydocker0", "ns1", "eth0");
        assert!(a.starts_with("ve-ns1-"), "{a}");
        assert_eq!(a, host_veth_name("mydocker0", "ns1", "eth0"));
        assert_ne!(a, host_veth_name("other", "ns1", "eth0"));
        assert_ne!(a, host_veth_name("mydocker0", "ns1", "eth1"));
        let long = host_veth_name("n", "a-very-long-namespace-name-indeed", "eth0");
        assert!(long.len() <= IFNAME_MAX, "{long}");
        assert!(validate_ifname(&long).is_ok());
    }

    #[test]
    fn path_refs_give_valid_names() {
        let n = host_veth_name("net", "/proc/1234/ns/net", "eth0");
        assert!(validate_ifname(&n).is_ok(), "{n}");
    }

    proptest! {
        #[test]
        fn any_namespace_gives_a_valid_host_name(ns in "\\PC{0,80}", net in "[a-z0-9]{1,20}") {
            let n = host_veth_name(&net, &ns, "eth0");
            prop_assert!(validate_ifname(&n).is_ok(), "{}", n);
        }
    }

    #[test]
    fn ifnames_are_checked() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("x".repeat(15).as_str()).is_ok());
        let e = validate_ifname(&"x".repeat(16)).unwrap_err();
        assert!(e.to_string().contains("16 bytes"), "{e}");
        for bad in ["", ".", "..", "a/b", "a:b", "a b"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn network_names_are_checked() {
        assert!(validate_network_name("mydocker0").is_ok());
        assert!(validate_network_name("web.db-1_x").is_ok());
        for bad in ["", "-x", "a/b", "a b", "ü"] {
            assert!(validate_network_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn macs_parse_and_derive() {
        assert_eq!(
            parse_mac("02:42:ac:11:00:02").unwrap(),
            [0x02, 0x42, 0xac, 0x11, 0, 2]
        );
        assert!(parse_mac("01:00:5e:00:00:01").is_err());
        assert!(parse_mac("00:00:00:00:00:00").is_err());
        assert!(parse_mac("02:42:ac:11:00").is_err());
        assert!(parse_mac("02:42:ac:11:00:zz").is_err());
        let m = derived_mac(&["mydocker0"]);
        assert_eq!(m[0], 0x02);
        assert_eq!(m, derived_mac(&["mydocker0"]));
        assert_eq!(
            format_mac(&[2, 0x42, 0xac, 0x11, 0, 2]),
            "02:42:ac:11:00:02"
        );
    }
}
