//! What a listing shows of an attachment, read off its record line without
//! building an `Attachment`: `show` lists a thousand attachments, and
//! decoding each (allocations, address parsing, then freeing them all) was
//! a tenth of its time.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::model::{ports::PortMapping, Attachment};

/// One attachment as `show` lists it.
pub enum Summary<'a> {
    /// Read off a line not decoded yet: its fields as recorded.
    Line(LineSummary<'a>),
    /// An attachment decoded already, or one whose line has more than a
    /// summary holds (published ports).
    Decoded(&'a Attachment),
}

/// The fields of a line a summary needs, borrowed from it.
pub struct LineSummary<'a> {
    namespace: &'a str,
    host_ifname: &'a str,
    ifname: &'a str,
    /// Inside the brackets: `"address/prefix"`, comma-separated, IPv6 in
    /// the canonical form an `IpNet` displays.
    addresses: &'a str,
}

/// The string value of `key` in `line`, `None` when it has an escape (a
/// summary borrows; decoding handles those). A key cannot be matched
/// inside a string value: a `"` in there is escaped, and a key's text
/// ends with `":`. The first match is the attachment's own field: nsnet
/// writes them in `Attachment`'s order, and the nested `cni` object (its
/// own `ifname`) comes after.
fn string_value<'a>(line: &'a str, key: &Finder) -> Option<&'a str> {
    let at = key.find(line.as_bytes())? + key.needle().len();
    string_at(&line[at..])
}

/// Searchers for the keys a summary reads, built once: building one costs
/// more than searching a line with it.
struct Keys {
    host_ifname: Finder<'static>,
    ifname: Finder<'static>,
    addresses: Finder<'static>,
    ports: Finder<'static>,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    host_ifname: Finder::new(b"\"host_ifname\":"),
    ifname: Finder::new(b"\"ifname\":"),
    addresses: Finder::new(b"\"addresses\":["),
    ports: Finder::new(super::PORTS_KEY.as_bytes()),
});

/// The string `rest` starts with, unless it has an escape.
pub(super) fn string_at(rest: &str) -> Option<&str> {
    let rest = rest.strip_prefix('"')?;
    let value = &rest[..memchr::memchr(b'"', rest.as_bytes())?];
    (!value.contains('\\')).then_some(value)
}

/// What is inside the brackets of a line's `"addresses":[…]`.
pub(super) fn recorded_addresses(line: &str) -> Option<&str> {
    let key = &KEYS.addresses;
    let at = key.find(line.as_bytes())? + key.needle().len();
    Some(&line[at..at + memchr::memchr(b']', &line.as_bytes()[at..])?])
}

/// The `address/prefix` items of `recorded_addresses`; `None` for an item
/// not in the form nsnet writes.
pub(super) fn address_items(recorded: &str) -> impl Iterator<Item = Option<&str>> {
    recorded
        .split(',')
        .filter(|item| !item.is_empty())
        .map(|item| item.strip_prefix('"')?.strip_suffix('"'))
}

impl<'a> Summary<'a> {
    /// The summary of `line`, read off it without decoding; `None` when
    /// the line has more than a summary shows (published ports) or is not
    /// in the form nsnet writes.
    pub(super) fn of_line(line: &'a str) -> Option<Summary<'a>> {
        let keys = &*KEYS;
        if keys.ports.find(line.as_bytes()).is_some() {
            return None;
        }
        // The first field, as nsnet writes it.
        let namespace = string_at(line.strip_prefix('{')?.strip_prefix(super::FIRST_KEY)?)?;
        Some(Summary::Line(LineSummary {
            namespace,
            host_ifname: string_value(line, &keys.host_ifname)?,
            ifname: string_value(line, &keys.ifname)?,
            addresses: recorded_addresses(line)?,
        }))
    }

    pub fn host_ifname(&self) -> &str {
        match self {
            Summary::Line(l) => l.host_ifname,
            Summary::Decoded(a) => &a.host_ifname,
        }
    }

    pub fn ifname(&self) -> &str {
        match self {
            Summary::Line(l) => l.ifname,
            Summary::Decoded(a) => &a.ifname,
        }
    }

    /// The namespace as the user gave it: a name, or a path.
    pub fn namespace(&self) -> Cow<'_, str> {
        match self {
            Summary::Line(l) => Cow::Borrowed(l.namespace),
            Summary::Decoded(a) => a
                .namespace
                .name()
                .map_or_else(|| Cow::Owned(a.namespace.to_string()), Cow::Borrowed),
        }
    }

    /// The addresses, "address/prefix", comma-separated.
    pub fn addresses(&self) -> Addresses<'_, 'a> {
        Addresses(self)
    }

    pub fn ports(&self) -> &[PortMapping] {
        match self {
            Summary::Line(_) => &[],
            Summary::Decoded(a) => &a.ports,
        }
    }
}

pub struct Addresses<'s, 'a>(&'s Summary<'a>);

impl fmt::Display for Addresses<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Summary::Line(l) => comma_separated(f, address_items(l.addresses).flatten()),
            Summary::Decoded(a) => comma_separated(f, a.addresses.iter()),
        }
    }
}

fn comma_separated(
    f: &mut fmt::Formatter<'_>,
    items: impl Iterator<Item = impl fmt::Display>,
) -> fmt::Result {
    let mut sep = "";
    for item in items {
        write!(f, "{sep}{item}")?;
        sep = ",";
    }
    Ok(())
}
