//! Which aliases and tags a key had at a given time: protection as of the event, not as of the
//! moment trailguard gets to it. Pure: the worker feeds snapshots (from `ListAliases` /
//! `ListResourceTags`, every `kms.refresh_interval`) and the pollers feed changes (`CreateAlias`,
//! `DeleteAlias`, `UpdateAlias`, `TagResource`, `UntagResource` events, with their time and
//! caller); every question takes the event's time.
//!
//! # Why
//!
//! An intruder who schedules a protected key's deletion and then deletes its alias (or disables
//! it and then untags it) would otherwise leave a key that looks unprotected by the time its
//! findings are handled. So:
//! - the key's facts at time t are rebuilt from the nearest snapshot, replaying the changes
//!   between (forward from an older snapshot, or backward from a newer one);
//! - a protective alias or tag removed by a caller not in `kms.allowed_principals` still protects
//!   the key: only allowed principals can unprotect a key, as only they may disable it. Moving
//!   an alias to another key (`UpdateAlias`, whose record names only the new key) removes it
//!   from the key that held it as of the event ([`moved_from`]);
//! - exemptions are matched only on what no such caller gave the key ([`History::vouched_at`]):
//!   a stranger cannot exempt a key by giving it an exempt alias.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::Record;
use crate::plan::KeyFacts;

/// What a change did to a key's aliases or tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edit {
    AddAlias(String),
    RemoveAlias(String),
    AddTag(String, String),
    RemoveTag(String),
}

/// One alias or tag change, as event history recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub key_arn: String,
    pub time: DateTime<Utc>,
    pub event_id: String,
    pub edit: Edit,
    /// The caller, and the role its session was issued for.
    pub principal: Option<String>,
    pub session_issuer: Option<String>,
    /// An `UpdateAlias`'s addition: the alias was taken from the key that held it, which the
    /// record does not name ([`moved_from`] finds it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub moved: bool,
}

/// The alias and tag changes a record makes. `UpdateAlias` moves an alias, but its record names
/// only the key the alias now points to: the addition is returned, marked `moved`, and the
/// removal from the previous key is found by [`moved_from`] in what trailguard knows of keys.
pub fn changes(r: &Record) -> Vec<Change> {
    if r.source() != "kms.amazonaws.com" || !r.succeeded() {
        return Vec::new();
    }
    let Some(time) = r
        .event_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
    else {
        return Vec::new();
    };
    let Some(key_arn) = crate::rules::key_arn(r) else {
        return Vec::new();
    };
    let alias = || r.request_str("aliasName").map(str::to_owned);
    let edits: Vec<Edit> = match r.name() {
        "CreateAlias" | "UpdateAlias" => alias().map(Edit::AddAlias).into_iter().collect(),
        "DeleteAlias" => alias().map(Edit::RemoveAlias).into_iter().collect(),
        "TagResource" => r
            .request_parameters
            .as_ref()
            .and_then(|p| p.get("tags"))
            .and_then(|t| t.as_array())
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| {
                        let k = t.get("tagKey").or_else(|| t.get("TagKey"))?.as_str()?;
                        let v = t.get("tagValue").or_else(|| t.get("TagValue"))?.as_str()?;
                        Some(Edit::AddTag(k.to_owned(), v.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        "UntagResource" => r
            .request_parameters
            .as_ref()
            .and_then(|p| p.get("tagKeys"))
            .and_then(|t| t.as_array())
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| Some(Edit::RemoveTag(k.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let identity = r.user_identity.as_ref();
    edits
        .into_iter()
        .map(|edit| Change {
            key_arn: key_arn.clone(),
            time,
            event_id: r.event_id().to_owned(),
            edit,
            principal: r.principal_arn().map(str::to_owned),
            session_issuer: identity
                .and_then(|i| i.session_context.as_ref())
                .and_then(|c| c.session_issuer.as_ref())
                .and_then(|s| s.arn.clone()),
            moved: r.name() == "UpdateAlias",
        })
        .collect()
}

/// The removals an `UpdateAlias` (`moved`, an addition marked [`Change::moved`]) made: from
/// every other key that had the alias as of the event, by `known` (candidate keys and their
/// histories). Each is recorded as that key's own change, by the same caller at the same time,
/// so a stranger who moves a protective alias away has removed it ([`History::effective_at`]).
pub fn moved_from(moved: &Change, known: &[(String, History)]) -> Vec<Change> {
    let Edit::AddAlias(alias) = &moved.edit else {
        return Vec::new();
    };
    if !moved.moved {
        return Vec::new();
    }
    known
        .iter()
        .filter(|(arn, h)| *arn != moved.key_arn && h.had_alias(alias, moved.time))
        // Already recorded (the move was read when the key was known to hold the alias).
        .filter(|(_, h)| !h.changes.iter().any(|x| x.event_id == moved.event_id))
        .map(|(arn, _)| Change {
            key_arn: arn.clone(),
            edit: Edit::RemoveAlias(alias.clone()),
            moved: false,
            ..moved.clone()
        })
        .collect()
}

/// The key a record's alias removal applies to, among `changes`: for an `UpdateAlias`, the key
/// the alias was moved from, so its `kms_protection_removed` names the key that lost it.
pub fn removed_from<'c>(event_id: &str, changes: &'c [Change]) -> Option<&'c str> {
    changes
        .iter()
        .find(|c| c.event_id == event_id && matches!(c.edit, Edit::RemoveAlias(_)))
        .map(|c| c.key_arn.as_str())
}

/// What is known of one key over time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Facts read from KMS, oldest first.
    pub snapshots: Vec<(DateTime<Utc>, KeyFacts)>,
    /// Changes from event history, oldest first.
    pub changes: Vec<Change>,
}

impl Edit {
    /// The alias an alias change is about.
    pub fn alias(&self) -> Option<&str> {
        match self {
            Edit::AddAlias(a) | Edit::RemoveAlias(a) => Some(a),
            _ => None,
        }
    }
}

fn apply(f: &mut KeyFacts, edit: &Edit, forward: bool) {
    let add_alias = |f: &mut KeyFacts, a: &str| {
        if !f.aliases.iter().any(|x| x == a) {
            f.aliases.push(a.to_owned());
        }
    };
    match (edit, forward) {
        (Edit::AddAlias(a), true) | (Edit::RemoveAlias(a), false) => add_alias(f, a),
        (Edit::AddAlias(a), false) | (Edit::RemoveAlias(a), true) => f.aliases.retain(|x| x != a),
        (Edit::AddTag(k, v), true) => {
            f.tags.retain(|(tk, _)| tk != k);
            f.tags.push((k.clone(), v.clone()));
        }
        (Edit::AddTag(k, _), false) | (Edit::RemoveTag(k), true) => f.tags.retain(|(tk, _)| tk != k),
        // The value removed is not in the record: any value of that key.
        (Edit::RemoveTag(k), false) => {
            f.tags.retain(|(tk, _)| tk != k);
            f.tags.push((k.clone(), "*".into()));
        }
    }
}

fn adds(e: &Edit) -> bool {
    matches!(e, Edit::AddAlias(_) | Edit::AddTag(..))
}

impl History {
    /// The key's facts at `t`, as far as known: `None` with no snapshot at all.
    ///
    /// `eventTime` has second precision, so events of the same second cannot be ordered: a
    /// change in `t`'s own second counts toward protection (an addition is applied, a removal
    /// is not).
    pub fn facts_at(&self, t: DateTime<Utc>) -> Option<KeyFacts> {
        let same_second = |c: &Change| c.time.timestamp() == t.timestamp();
        if let Some((at, snap)) = self.snapshots.iter().rev().find(|(at, _)| *at <= t) {
            let mut f = snap.clone();
            for c in self.changes.iter().filter(|c| c.time > *at && c.time <= t) {
                if !same_second(c) || adds(&c.edit) {
                    apply(&mut f, &c.edit, true);
                }
            }
            for c in self
                .changes
                .iter()
                .filter(|c| c.time > t && same_second(c) && adds(&c.edit))
            {
                apply(&mut f, &c.edit, true);
            }
            return Some(f);
        }
        let (at, snap) = self.snapshots.first()?;
        let mut f = snap.clone();
        for c in self
            .changes
            .iter()
            .rev()
            .filter(|c| (c.time > t || same_second(c)) && c.time <= *at)
        {
            if !same_second(c) || !adds(&c.edit) {
                apply(&mut f, &c.edit, false);
            }
        }
        Some(f)
    }

    /// Whether the key had `alias` at `t`: its latest recorded change of the alias up to `t` is
    /// an addition, or its facts then show it. (A snapshot may contradict an older addition
    /// whose removal is not delivered yet: the key is taken to have had it, which keeps it
    /// protected.)
    pub fn had_alias(&self, alias: &str, t: DateTime<Utc>) -> bool {
        let latest = self
            .changes
            .iter()
            .filter(|c| c.time <= t && c.edit.alias() == Some(alias))
            .max_by_key(|c| c.time);
        latest.is_some_and(|c| adds(&c.edit))
            || self
                .facts_at(t)
                .is_some_and(|f| f.aliases.iter().any(|a| a == alias))
    }

    /// The last facts read, whenever that was.
    pub fn last_known(&self) -> Option<&KeyFacts> {
        self.snapshots.last().map(|(_, f)| f)
    }

    /// Removals up to `t` by callers `allowed` does not accept: they do not unprotect the key.
    pub fn unauthorized_removals(&self, t: DateTime<Utc>, allowed: &dyn Fn(&Change) -> bool) -> Vec<&Change> {
        self.changes
            .iter()
            .filter(|c| c.time <= t && matches!(c.edit, Edit::RemoveAlias(_) | Edit::RemoveTag(_)))
            .filter(|c| !allowed(c))
            .filter(|c| {
                // Undone later (before t) by an allowed caller: it stands.
                !self.changes.iter().any(|later| {
                    later.time > c.time
                        && later.time <= t
                        && allowed(later)
                        && same_target(&later.edit, &c.edit)
                })
            })
            .collect()
    }

    /// The facts that decide protection at `t`: as they were; plus what holds now that no
    /// recorded change added after `t` (its event may not have been delivered yet: counting it
    /// keeps the key); plus what unauthorized callers removed.
    pub fn effective_at(&self, t: DateTime<Utc>, allowed: &dyn Fn(&Change) -> bool) -> Option<KeyFacts> {
        let mut f = self.facts_at(t)?;
        let latest = self.facts_at(DateTime::<Utc>::MAX_UTC).unwrap_or_default();
        let added_later = |e: &Edit| {
            self.changes.iter().any(|c| {
                c.time > t
                    && matches!(c.edit, Edit::AddAlias(_) | Edit::AddTag(..))
                    && same_target(&c.edit, e)
            })
        };
        for a in &latest.aliases {
            let e = Edit::AddAlias(a.clone());
            if !f.aliases.contains(a) && !added_later(&e) {
                apply(&mut f, &e, true);
            }
        }
        for (k, v) in &latest.tags {
            let e = Edit::AddTag(k.clone(), v.clone());
            if !f.tags.iter().any(|(tk, _)| tk == k) && !added_later(&e) {
                apply(&mut f, &e, true);
            }
        }
        for c in self.unauthorized_removals(t, allowed) {
            apply(&mut f, &c.edit, false);
        }
        // A tag's value overwritten by such a caller: the value it replaced still counts.
        for (k, v) in self.unauthorized_overwrites(t, allowed) {
            if !f.tags.iter().any(|(tk, tv)| *tk == k && *tv == v) {
                f.tags.push((k, v));
            }
        }
        Some(f)
    }

    /// The facts an exemption may be matched against at `t`: the key's facts as they were at
    /// `t` (not what [`Self::effective_at`] adds to keep a key protected), less every alias or
    /// tag that a caller `allowed` does not accept may have given it (see `History::vouched`).
    /// So a stranger can neither bring a key under an exemption nor keep it there.
    pub fn vouched_at(&self, t: DateTime<Utc>, allowed: &dyn Fn(&Change) -> bool) -> Option<KeyFacts> {
        let mut f = self.facts_at(t)?;
        f.aliases
            .retain(|a| self.vouched(&Edit::AddAlias(a.clone()), t, allowed));
        f.tags
            .retain(|(k, v)| self.vouched(&Edit::AddTag(k.clone(), v.clone()), t, allowed));
        Some(f)
    }

    /// Whether the key had `item` (an alias, or a tag with its value) at `t` on the word of an
    /// allowed caller or of KMS before anyone changed it: its latest recorded change up to `t`
    /// is an addition of exactly it by an allowed caller (and no stranger added it in that
    /// second, whose changes cannot be ordered), and every snapshot since shows it. An item no
    /// recorded change explains (a snapshot shows it where an earlier one did not: its event is
    /// not delivered yet) is not vouched for; one present since the first snapshot is.
    fn vouched(&self, item: &Edit, t: DateTime<Utc>, allowed: &dyn Fn(&Change) -> bool) -> bool {
        let second = t.timestamp();
        let mine = |c: &&Change| c.time.timestamp() <= second && same_target(&c.edit, item);
        let latest = self.changes.iter().filter(mine).map(|c| c.time.timestamp()).max();
        if let Some(at) = latest {
            let last: Vec<&Change> = self
                .changes
                .iter()
                .filter(mine)
                .filter(|c| c.time.timestamp() == at)
                .collect();
            let by_stranger = last.iter().any(|c| adds(&c.edit) && !allowed(c));
            let by_allowed = last.iter().any(|c| c.edit == *item && allowed(c));
            if by_stranger || !by_allowed {
                return false;
            }
        }
        let has = |f: &KeyFacts| match item {
            Edit::AddAlias(a) => f.aliases.contains(a),
            Edit::AddTag(k, v) => f.tags.iter().any(|(tk, tv)| tk == k && tv == v),
            _ => false,
        };
        self.snapshots
            .iter()
            .filter(|(at, _)| latest.is_none_or(|l| at.timestamp() > l) && at.timestamp() <= second)
            .all(|(_, f)| has(f))
    }

    /// Tag values replaced (`TagResource` over an existing value) up to `t` by callers
    /// `allowed` does not accept, and not set again since by an allowed one: (key, old value).
    fn unauthorized_overwrites(
        &self,
        t: DateTime<Utc>,
        allowed: &dyn Fn(&Change) -> bool,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for c in self.changes.iter().filter(|c| c.time <= t && !allowed(c)) {
            let Edit::AddTag(k, v) = &c.edit else {
                continue;
            };
            let undone = self.changes.iter().any(|later| {
                later.time > c.time && later.time <= t && allowed(later) && same_target(&later.edit, &c.edit)
            });
            let before = self.facts_at(c.time - chrono::Duration::milliseconds(1));
            if let Some((_, old)) = before
                .as_ref()
                .and_then(|b| b.tags.iter().find(|(tk, tv)| tk == k && tv != v))
                && !undone
            {
                out.push((k.clone(), old.clone()));
            }
        }
        out
    }
}

fn same_target(a: &Edit, b: &Edit) -> bool {
    match (a, b) {
        (Edit::AddAlias(x) | Edit::RemoveAlias(x), Edit::AddAlias(y) | Edit::RemoveAlias(y)) => x == y,
        (Edit::AddTag(x, _) | Edit::RemoveTag(x), Edit::AddTag(y, _) | Edit::RemoveTag(y)) => x == y,
        _ => false,
    }
}

/// Whether a change's caller is one of `allowed` (ARN globs; a role's ARN also accepts its
/// sessions).
pub fn by_allowed(c: &Change, allowed: &[String]) -> bool {
    crate::plan::principal_allowed(allowed, c.principal.as_deref(), c.session_issuer.as_deref()).is_some()
}

#[cfg(test)]
mod tests;
