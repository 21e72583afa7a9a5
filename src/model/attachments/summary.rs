//! What a listing shows of an attachment, read off its record line (by the
//! store, `LineSource::summary`) without building an `Attachment`: `show`
//! lists a thousand attachments, and decoding each (allocations, address
//! parsing, then freeing them all) was a tenth of its time.

use std::borrow::Cow;
use std::fmt;

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

impl<'a> LineSummary<'a> {
    /// A summary of fields read off a line; `addresses` is what is inside
    /// the brackets of its addresses: `"address/prefix"` items,
    /// comma-separated.
    pub fn new(
        namespace: &'a str,
        host_ifname: &'a str,
        ifname: &'a str,
        addresses: &'a str,
    ) -> LineSummary<'a> {
        LineSummary {
            namespace,
            host_ifname,
            ifname,
            addresses,
        }
    }
}

/// The `address/prefix` items of a list of quoted strings without escapes
/// (what is inside the brackets of a line's addresses); `None` for an item
/// not in that form.
pub fn address_items(recorded: &str) -> impl Iterator<Item = Option<&str>> {
    recorded
        .split(',')
        .filter(|item| !item.is_empty())
        .map(|item| item.strip_prefix('"')?.strip_suffix('"'))
}

impl<'a> Summary<'a> {
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
