//! The protection history: alias and tag changes (written with the slice that read them) and
//! snapshots of keys' facts (written by the worker's refresh). Append-only rows keyed by key
//! ARN and time, so the pollers and the worker never rewrite each other's rows.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, WriteTransaction};

use super::{PROTECTION_CHANGES, PROTECTION_SNAPSHOTS, StateError, Store, db};
use crate::arn::KeyArn;
use crate::plan::KeyFacts;
use crate::protection::{self, Change, Edit, History};

fn ms(t: DateTime<Utc>) -> String {
    format!("{:020}", t.timestamp_millis().max(0))
}

pub(super) fn put_changes(tx: &WriteTransaction, changes: &[Change]) -> Result<(), StateError> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut t = db!(tx.open_table(PROTECTION_CHANGES))?;
    for (n, c) in changes.iter().enumerate() {
        let key = format!("{}\u{0}{}\u{0}{}\u{0}{n}", c.key_arn, ms(c.time), c.event_id);
        let bytes = serde_json::to_vec(c).map_err(|e| StateError::Db(e.to_string()))?;
        db!(t.insert(key.as_str(), bytes.as_slice()))?;
    }
    Ok(())
}

impl Store {
    /// Everything known of a key's aliases and tags over time.
    pub fn history(&self, key_arn: &str) -> Result<History, StateError> {
        let tx = db!(self.db.begin_read())?;
        let start = format!("{key_arn}\u{0}");
        let end = format!("{key_arn}\u{1}");
        let mut h = History::default();
        let snaps = db!(tx.open_table(PROTECTION_SNAPSHOTS))?;
        for row in db!(snaps.range(start.as_str()..end.as_str()))? {
            let (k, v) = db!(row)?;
            let Some(millis) = k
                .value()
                .rsplit('\u{0}')
                .next()
                .and_then(|m| m.parse::<i64>().ok())
            else {
                continue;
            };
            if let (Some(t), Ok(f)) = (
                DateTime::from_timestamp_millis(millis),
                serde_json::from_slice::<KeyFacts>(v.value()),
            ) {
                h.snapshots.push((t, f));
            }
        }
        let changes = db!(tx.open_table(PROTECTION_CHANGES))?;
        for row in db!(changes.range(start.as_str()..end.as_str()))? {
            let (_, v) = db!(row)?;
            if let Ok(c) = serde_json::from_slice::<Change>(v.value()) {
                h.changes.push(c);
            }
        }
        Ok(h)
    }

    /// `changes`, with the removal every alias move (`UpdateAlias`) made from the key that held
    /// the alias as of the event ([`protection::moved_from`]), judged on the store's history and
    /// the changes before it in `changes` (a `CreateAlias` read in the same slice). A
    /// `CreateAlias` delivered after a move of its alias that trailguard has already read gives
    /// the removal the move made from its key, which was not known then.
    pub fn with_moves(&self, changes: &[Change]) -> Result<Vec<Change>, StateError> {
        let mut out: Vec<Change> = Vec::with_capacity(changes.len());
        for c in changes {
            out.push(c.clone());
            let Edit::AddAlias(alias) = &c.edit else {
                continue;
            };
            let mut known = self.alias_histories(alias, &c.key_arn)?;
            if c.moved {
                for earlier in out.iter().filter(|e| e.edit.alias() == Some(alias.as_str())) {
                    match known.iter_mut().find(|(arn, _)| *arn == earlier.key_arn) {
                        Some((_, h)) => h.changes.push(earlier.clone()),
                        None if earlier.key_arn != c.key_arn => {
                            let mut h = self.history(&earlier.key_arn)?;
                            h.changes.push(earlier.clone());
                            known.push((earlier.key_arn.clone(), h));
                        }
                        None => {}
                    }
                }
                for (_, h) in &mut known {
                    h.changes.sort_by_key(|x| x.time);
                }
                let removed = protection::moved_from(c, &known);
                out.extend(removed);
            } else {
                let next_move = known
                    .iter()
                    .flat_map(|(_, h)| &h.changes)
                    .filter(|m| m.moved && m.edit == c.edit && m.time > c.time)
                    .min_by_key(|m| m.time)
                    .cloned();
                if let Some(m) = next_move {
                    let mut mine = self.history(&c.key_arn)?;
                    mine.changes
                        .extend(out.iter().filter(|e| e.key_arn == c.key_arn).cloned());
                    mine.changes.sort_by_key(|x| x.time);
                    out.extend(protection::moved_from(&m, &[(c.key_arn.clone(), mine)]));
                }
            }
        }
        Ok(out)
    }

    /// The histories of the keys of `like`'s region and account, other than `like`, that
    /// trailguard ever saw with `alias` (in a snapshot or a change): the keys an alias moved to
    /// `like` may have come from. Reads every row: alias moves are rare.
    fn alias_histories(&self, alias: &str, like: &str) -> Result<Vec<(String, History)>, StateError> {
        let Some(scope) = KeyArn::parse(like) else {
            return Ok(Vec::new());
        };
        let needle = serde_json::to_string(alias).map_err(|e| StateError::Db(e.to_string()))?;
        let mut keys = std::collections::BTreeSet::new();
        {
            let tx = db!(self.db.begin_read())?;
            for table in [PROTECTION_SNAPSHOTS, PROTECTION_CHANGES] {
                let t = db!(tx.open_table(table))?;
                for row in db!(t.iter())? {
                    let (k, v) = db!(row)?;
                    let Some(arn) = k.value().split('\u{0}').next() else {
                        continue;
                    };
                    let same_scope = KeyArn::parse(arn)
                        .is_some_and(|a| a.region == scope.region && a.account == scope.account);
                    if arn != like
                        && same_scope
                        && memchr::memmem::find(v.value(), needle.as_bytes()).is_some()
                    {
                        keys.insert(arn.to_owned());
                    }
                }
            }
        }
        keys.into_iter()
            .map(|arn| Ok((arn.clone(), self.history(&arn)?)))
            .collect()
    }

    /// Records what KMS said of a key at `at`.
    pub fn put_snapshot(&self, key_arn: &str, at: DateTime<Utc>, facts: &KeyFacts) -> Result<(), StateError> {
        self.write(|tx| {
            super::tables::put(
                tx,
                PROTECTION_SNAPSHOTS,
                &format!("{key_arn}\u{0}{}", ms(at)),
                facts,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const KEY: &str = "arn:aws:kms:eu-west-1:111122223333:key/k-1";
    const DECOY: &str = "arn:aws:kms:eu-west-1:111122223333:key/decoy";
    const ELSEWHERE: &str = "arn:aws:kms:us-east-1:111122223333:key/k-2";

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn aliased(a: &str) -> KeyFacts {
        KeyFacts {
            aliases: vec![a.into()],
            tags: vec![],
        }
    }

    fn change(key: &str, s: i64, edit: Edit, moved: bool) -> Change {
        Change {
            key_arn: key.into(),
            time: at(s),
            event_id: format!("e{s}"),
            edit,
            principal: Some("arn:aws:sts::111122223333:assumed-role/dev/mallory".into()),
            session_issuer: None,
            moved,
        }
    }

    #[test]
    fn a_move_is_recorded_as_a_removal_from_the_key_of_the_same_region_that_held_the_alias() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        store.put_snapshot(KEY, at(0), &aliased("alias/prod-db")).unwrap();
        // The same alias name in another region is another alias.
        store
            .put_snapshot(ELSEWHERE, at(0), &aliased("alias/prod-db"))
            .unwrap();
        let moved = change(DECOY, 50, Edit::AddAlias("alias/prod-db".into()), true);
        let all = store.with_moves(std::slice::from_ref(&moved)).unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[1].key_arn, KEY);
        assert_eq!(all[1].edit, Edit::RemoveAlias("alias/prod-db".into()));
    }

    #[test]
    fn a_move_after_a_create_alias_of_the_same_slice_is_taken_from_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let created = change(KEY, 40, Edit::AddAlias("alias/prod-db".into()), false);
        let moved = change(DECOY, 50, Edit::AddAlias("alias/prod-db".into()), true);
        let all = store.with_moves(&[created, moved]).unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all[2].key_arn, KEY);
        assert_eq!(all[2].edit, Edit::RemoveAlias("alias/prod-db".into()));
    }

    #[test]
    fn a_create_alias_delivered_after_the_move_gives_the_removal_the_move_made() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        // The key got the alias less than a refresh before the move, and the CreateAlias is
        // delivered after the UpdateAlias: when the move was read, no key was known to hold it.
        store.put_snapshot(KEY, at(0), &KeyFacts::default()).unwrap();
        let moved = change(DECOY, 50, Edit::AddAlias("alias/prod-db".into()), true);
        let first = store.with_moves(std::slice::from_ref(&moved)).unwrap();
        assert_eq!(first.len(), 1);
        store
            .record_slice("eu-west-1", None, &[], &[], &[], &first)
            .unwrap();
        store.put_snapshot(KEY, at(60), &KeyFacts::default()).unwrap();
        let created = change(KEY, 40, Edit::AddAlias("alias/prod-db".into()), false);
        let all = store.with_moves(&[created]).unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[1].key_arn, KEY);
        assert_eq!(all[1].time, at(50), "removed by the move, when it happened");
        assert_eq!(all[1].event_id, "e50");
        assert_eq!(all[1].edit, Edit::RemoveAlias("alias/prod-db".into()));
    }
}
