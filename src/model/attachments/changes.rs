//! A run of changes to a list of attachments (a log's removals and
//! upserts, in order) applied in one walk over the list, with the result of
//! applying them one by one (`remove_namespace`, `upsert`), each of which
//! walks the list to find its namespace: a log of sixteen changes read at
//! each command cost sixteen walks over a thousand lines.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::{Attachment, Attachments, NsRef, Slot};

/// One change, as a log made it.
#[derive(Clone, Copy)]
pub enum Change<'a> {
    /// Every attachment of the namespace goes.
    Remove(&'a NsRef),
    /// Replaces the first attachment of its namespace, or is appended.
    Upsert(&'a Arc<Attachment>),
}

/// Below this many changes the walks one by one cost less than hashing
/// every line's namespace once.
const ONE_BY_ONE_BELOW: usize = 3;

/// What the changes leave of one namespace.
#[derive(Default)]
struct Fate {
    /// Where the list holds the namespace before the changes.
    at: Vec<usize>,
    /// Whether those attachments are still there (not removed).
    kept: bool,
    /// The value its first attachment there takes.
    first: Option<Arc<Attachment>>,
    /// An attachment appended after the list: its turn among the appended
    /// and its value.
    appended: Option<(usize, Arc<Attachment>)>,
}

/// FNV-1a: the keys are short and chosen by nsnet, and SipHash costs as
/// much as the rest of a line's look-up.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
    }
}

type Keys = HashMap<Vec<u8>, Fate, BuildHasherDefault<Fnv>>;

/// The namespace's string form, as `LineSource::namespace` reads it off a
/// line.
fn key_of(ns: &NsRef) -> Vec<u8> {
    ns.to_string().into_bytes()
}

impl<'a> Change<'a> {
    fn namespace(&self) -> &'a NsRef {
        match self {
            Change::Remove(ns) => ns,
            Change::Upsert(a) => &a.namespace,
        }
    }
}

impl Attachments {
    /// Applies `changes` in order: the same list as `remove_namespace` and
    /// `upsert` one change after the other give.
    pub fn apply_changes(&mut self, changes: &[Change]) {
        if changes.len() < ONE_BY_ONE_BELOW {
            for change in changes {
                match change {
                    Change::Remove(ns) => self.remove_namespace(ns),
                    Change::Upsert(a) => self.upsert(Arc::clone(a)),
                }
            }
            return;
        }
        let changes: Vec<(Vec<u8>, &Change)> =
            changes.iter().map(|c| (key_of(c.namespace()), c)).collect();
        let mut keys: Keys = changes
            .iter()
            .map(|(key, _)| {
                let fate = Fate {
                    kept: true,
                    ..Fate::default()
                };
                (key.clone(), fate)
            })
            .collect();
        self.locate(&mut keys);
        let mut turns = 0;
        for (key, change) in &changes {
            let fate = keys.get_mut(key).expect("every key is in");
            match change {
                Change::Remove(_) => {
                    (fate.kept, fate.first, fate.appended) = (false, None, None);
                }
                Change::Upsert(a) => {
                    if fate.kept && !fate.at.is_empty() {
                        fate.first = Some(Arc::clone(a));
                    } else if let Some((_, value)) = &mut fate.appended {
                        *value = Arc::clone(a);
                    } else {
                        fate.appended = Some((turns, Arc::clone(a)));
                        turns += 1;
                    }
                }
            }
        }
        self.settle(keys);
    }

    /// Notes where each key's namespace is in the list, in one walk.
    fn locate(&self, keys: &mut Keys) {
        for (i, slot) in self.slots.iter().enumerate() {
            let fate = match self.line_key(slot) {
                Some(key) => keys.get_mut(key),
                None => keys.get_mut(&key_of(&self.get(slot).namespace)),
            };
            if let Some(fate) = fate {
                fate.at.push(i);
            }
        }
    }

    /// The namespace of a slot's undecoded line, when the store can read
    /// it off the line.
    fn line_key<'s>(&'s self, slot: &Slot) -> Option<&'s [u8]> {
        let i = self.undecoded_line(slot)?;
        self.lines().source.namespace(i).map(str::as_bytes)
    }

    /// Puts the fates in place: removals, first attachments replaced, then
    /// the appended ones in their turn.
    fn settle(&mut self, keys: Keys) {
        let mut gone = vec![false; self.slots.len()];
        let mut appended = Vec::new();
        for fate in keys.into_values() {
            if !fate.kept {
                fate.at.iter().for_each(|i| gone[*i] = true);
            } else if let (Some(value), Some(i)) = (fate.first, fate.at.first()) {
                self.slots[*i] = Slot::Value(value);
            }
            appended.extend(fate.appended);
        }
        if gone.contains(&true) {
            let mut i = 0;
            self.slots.retain(|_| {
                i += 1;
                !gone[i - 1]
            });
        }
        appended.sort_by_key(|(turn, _)| *turn);
        self.slots
            .extend(appended.into_iter().map(|(_, a)| Slot::Value(a)));
    }
}
