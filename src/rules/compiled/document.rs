//! Whole documents: a CloudTrail log file (`{"Records": [...]}`), a JSON array of records, or
//! `lookup-events` output (`{"Events": [{"CloudTrailEvent": "..."}]}`), streamed record by record.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{CompiledSet, Key, NodeSeed, Scalar, find_key};

pub(super) struct DocVisitor<'s, 'f> {
    pub(super) set: &'s CompiledSet,
    pub(super) on_record: &'f mut dyn FnMut(Vec<Scalar<'_>>),
}

/// Each element of an array is a record.
struct RecordsSeed<'s, 'f> {
    set: &'s CompiledSet,
    on_record: &'f mut dyn FnMut(Vec<Scalar<'_>>),
    /// `lookup-events` output: each element holds the record as a JSON string.
    lookup: bool,
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of CloudTrail records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.lookup {
            #[derive(serde::Deserialize)]
            struct Event {
                #[serde(rename = "CloudTrailEvent")]
                cloud_trail_event: Option<String>,
            }
            while let Some(e) = seq.next_element::<Event>()? {
                if let Some(text) = e.cloud_trail_event {
                    let slots = self
                        .set
                        .extract(text.as_bytes())
                        .map_err(serde::de::Error::custom)?;
                    (self.on_record)(slots);
                }
            }
            return Ok(());
        }
        while let Some(()) = seq.next_element_seed(OneRecord {
            set: self.set,
            on_record: &mut *self.on_record,
        })? {}
        Ok(())
    }
}

struct OneRecord<'s, 'f> {
    set: &'s CompiledSet,
    on_record: &'f mut dyn FnMut(Vec<Scalar<'_>>),
}

impl<'de> DeserializeSeed<'de> for OneRecord<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let slots = self.set.extract_from(d)?;
        (self.on_record)(slots);
        Ok(())
    }
}

impl<'de> Visitor<'de> for DocVisitor<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CloudTrail records: an object, an array, {\"Records\": [...]} or lookup-events output")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        RecordsSeed {
            set: self.set,
            on_record: self.on_record,
            lookup: false,
        }
        .visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut slots = vec![Scalar::Missing; self.set.slots];
        let root = &self.set.nodes[0];
        let mut wrapper = false;
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if *k == *b"Records" || *k == *b"Events" {
                wrapper = true;
                map.next_value_seed(RecordsSeed {
                    set: self.set,
                    on_record: &mut *self.on_record,
                    lookup: *k == *b"Events",
                })?;
                continue;
            }
            match find_key(&root.keys, &k) {
                Some(child) => map.next_value_seed(NodeSeed {
                    set: self.set,
                    node: child,
                    slots: &mut slots,
                    top: false,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !wrapper {
            (self.on_record)(slots);
        }
        Ok(())
    }
}
