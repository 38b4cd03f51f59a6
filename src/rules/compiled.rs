//! Rule patterns compiled to the fields they read.
//!
//! All rules' selectors are merged into one trie. A record is deserialized once with a visitor
//! that walks the trie: a key no rule reads is skipped with `IgnoredAny` (validated, nothing
//! built), a key some rule reads is captured as a [`Scalar`] (strings borrowed from the input
//! when they have no escapes). No tree is built per record. Every rule is then evaluated over
//! the captured slots. Pure: no I/O.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::pattern::{self, Expr, Literal, Op, Selector, Step};

/// The value at one selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Missing,
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    /// An object or array: present, but not comparable.
    Container,
}

#[derive(Debug, Default)]
struct Node {
    slot: Option<usize>,
    keys: Vec<(String, usize)>,
    indices: Vec<(usize, usize)>,
}

#[derive(Debug)]
enum CExpr {
    And(Box<CExpr>, Box<CExpr>),
    Or(Box<CExpr>, Box<CExpr>),
    Compare { slot: usize, op: Op, value: Literal },
    IsNull(usize),
    NotExists(usize),
    IsBool(usize, bool),
}

/// A set of patterns, compiled together.
#[derive(Debug)]
pub struct CompiledSet {
    nodes: Vec<Node>,
    slots: usize,
    exprs: Vec<CExpr>,
    selectors: Vec<Selector>,
}

impl CompiledSet {
    pub fn new(patterns: &[&Expr]) -> Self {
        let mut set = CompiledSet {
            nodes: vec![Node::default()],
            slots: 0,
            exprs: Vec::new(),
            selectors: Vec::new(),
        };
        for p in patterns {
            let e = set.compile(p);
            set.exprs.push(e);
        }
        set
    }

    /// The selectors the set reads (for `rules list` and docs).
    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }

    fn slot(&mut self, sel: &Selector) -> usize {
        let mut node = 0;
        for step in sel {
            let existing = match step {
                Step::Key(k) => self.nodes[node]
                    .keys
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, i)| *i),
                Step::Index(i) => self.nodes[node]
                    .indices
                    .iter()
                    .find(|(n, _)| n == i)
                    .map(|(_, c)| *c),
            };
            node = match existing {
                Some(c) => c,
                None => {
                    self.nodes.push(Node::default());
                    let c = self.nodes.len() - 1;
                    match step {
                        Step::Key(k) => self.nodes[node].keys.push((k.clone(), c)),
                        Step::Index(i) => self.nodes[node].indices.push((*i, c)),
                    }
                    c
                }
            };
        }
        match self.nodes[node].slot {
            Some(s) => s,
            None => {
                self.nodes[node].slot = Some(self.slots);
                self.selectors.push(sel.clone());
                self.slots += 1;
                self.slots - 1
            }
        }
    }

    fn compile(&mut self, e: &Expr) -> CExpr {
        match e {
            Expr::And(a, b) => CExpr::And(Box::new(self.compile(a)), Box::new(self.compile(b))),
            Expr::Or(a, b) => CExpr::Or(Box::new(self.compile(a)), Box::new(self.compile(b))),
            Expr::Compare { selector, op, value } => CExpr::Compare {
                slot: self.slot(selector),
                op: *op,
                value: value.clone(),
            },
            Expr::IsNull(s) => CExpr::IsNull(self.slot(s)),
            Expr::NotExists(s) => CExpr::NotExists(self.slot(s)),
            Expr::IsBool(s, b) => CExpr::IsBool(self.slot(s), *b),
        }
    }

    /// Reads the fields of one record (a JSON object).
    pub fn extract<'de>(&self, json: &'de [u8]) -> Result<Vec<Scalar<'de>>, serde_json::Error> {
        let mut slots = vec![Scalar::Missing; self.slots];
        let mut de = serde_json::Deserializer::from_slice(json);
        NodeSeed {
            set: self,
            node: 0,
            slots: &mut slots,
            top: true,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(slots)
    }

    /// Reads the fields of one record from any serde deserializer (streams).
    pub fn extract_from<'de, D: Deserializer<'de>>(&self, d: D) -> Result<Vec<Scalar<'de>>, D::Error> {
        let mut slots = vec![Scalar::Missing; self.slots];
        NodeSeed {
            set: self,
            node: 0,
            slots: &mut slots,
            top: true,
        }
        .deserialize(d)?;
        Ok(slots)
    }

    /// Adds a field to read without any pattern using it (for output); returns its slot.
    pub fn add_field(&mut self, sel: &Selector) -> usize {
        self.slot(sel)
    }

    /// Reads one JSON document of any CloudTrail shape and calls `on_record` with each record's
    /// fields: a record, an array of records, a log file `{"Records": [...]}`, or
    /// `aws cloudtrail lookup-events` output `{"Events": [{"CloudTrailEvent": "..."}]}`.
    /// A top-level object is taken for a record unless it has `Records` or `Events`.
    pub fn scan_document<'de, D: Deserializer<'de>>(
        &self,
        d: D,
        on_record: &mut dyn FnMut(Vec<Scalar<'_>>),
    ) -> Result<(), D::Error> {
        d.deserialize_any(document::DocVisitor { set: self, on_record })
    }

    /// Whether pattern `i` matches the extracted fields.
    pub fn matches(&self, i: usize, slots: &[Scalar<'_>]) -> bool {
        eval(&self.exprs[i], slots)
    }

    pub fn len(&self) -> usize {
        self.exprs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exprs.is_empty()
    }
}

fn text_eq(value: &Literal, s: &Scalar<'_>) -> Option<bool> {
    match (value, s) {
        (Literal::Regex(re), Scalar::Str(v)) => Some(re.is_match(v)),
        (Literal::Regex(_), _) => None,
        (Literal::Text { text, wildcard, .. }, Scalar::Str(v)) => Some(if *wildcard {
            pattern::wildcard(text, v)
        } else {
            text == v
        }),
        (Literal::Text { number: Some(n), .. }, Scalar::Num(v)) => Some(n == v),
        (Literal::Text { text, .. }, Scalar::Bool(b)) => Some(text == if *b { "true" } else { "false" }),
        _ => None,
    }
}

fn eval(e: &CExpr, slots: &[Scalar<'_>]) -> bool {
    match e {
        CExpr::And(a, b) => eval(a, slots) && eval(b, slots),
        CExpr::Or(a, b) => eval(a, slots) || eval(b, slots),
        CExpr::IsNull(s) => slots[*s] == Scalar::Null,
        CExpr::NotExists(s) => slots[*s] == Scalar::Missing,
        CExpr::IsBool(s, b) => slots[*s] == Scalar::Bool(*b),
        CExpr::Compare { slot, op, value } => {
            let v = &slots[*slot];
            match op {
                Op::Eq => text_eq(value, v) == Some(true),
                Op::Ne => text_eq(value, v) == Some(false),
                Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                    let (Scalar::Num(x), Literal::Text { number: Some(n), .. }) = (v, value) else {
                        return false;
                    };
                    match op {
                        Op::Lt => x < n,
                        Op::Le => x <= n,
                        Op::Gt => x > n,
                        _ => x >= n,
                    }
                }
            }
        }
    }
}

/// The child for a key: lengths and first bytes are compared before the rest.
#[inline]
fn find_key(keys: &[(String, usize)], kb: &[u8]) -> Option<usize> {
    let first = *kb.first()?;
    keys.iter()
        .find(|(n, _)| n.len() == kb.len() && n.as_bytes()[0] == first && n.as_bytes() == kb)
        .map(|(_, c)| *c)
}

struct NodeSeed<'s, 'de> {
    set: &'s CompiledSet,
    node: usize,
    slots: &'s mut Vec<Scalar<'de>>,
    top: bool,
}

impl<'s, 'de> NodeSeed<'s, 'de> {
    fn put(&mut self, v: Scalar<'de>) {
        if let Some(s) = self.set.nodes[self.node].slot {
            self.slots[s] = v;
        }
    }
}

impl<'s, 'de> DeserializeSeed<'de> for NodeSeed<'s, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A map key as raw bytes, borrowed when possible. Keys are only compared, never shown, so
/// they are not validated as UTF-8 (as `IgnoredAny` does not): that is a third of the cost of
/// reading a record otherwise.
struct Key<'de>(Cow<'de, [u8]>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_vec())))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.as_bytes().to_vec())))
            }
        }
        d.deserialize_bytes(V)
    }
}

impl<'s, 'de> Visitor<'de> for NodeSeed<'s, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.top {
            "a CloudTrail record (a JSON object)"
        } else {
            "a JSON value"
        })
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.put(Scalar::Container);
        let node = &self.set.nodes[self.node];
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match find_key(&node.keys, &k) {
                Some(child) => map.next_value_seed(NodeSeed {
                    set: self.set,
                    node: child,
                    slots: self.slots,
                    top: false,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if self.top {
            return Err(serde::de::Error::invalid_type(serde::de::Unexpected::Seq, &self));
        }
        self.put(Scalar::Container);
        let node = &self.set.nodes[self.node];
        let mut i = 0;
        loop {
            let more = match node.indices.iter().find(|(n, _)| *n == i) {
                Some((_, child)) => seq
                    .next_element_seed(NodeSeed {
                        set: self.set,
                        node: *child,
                        slots: self.slots,
                        top: false,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_borrowed_str<E: serde::de::Error>(mut self, v: &'de str) -> Result<(), E> {
        self.top_scalar()?;
        self.put(Scalar::Str(Cow::Borrowed(v)));
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(mut self, v: &str) -> Result<(), E> {
        self.top_scalar()?;
        self.put(Scalar::Str(Cow::Owned(v.to_owned())));
        Ok(())
    }
    fn visit_string<E: serde::de::Error>(mut self, v: String) -> Result<(), E> {
        self.top_scalar()?;
        self.put(Scalar::Str(Cow::Owned(v)));
        Ok(())
    }
    fn visit_bool<E: serde::de::Error>(mut self, v: bool) -> Result<(), E> {
        self.top_scalar()?;
        self.put(Scalar::Bool(v));
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(mut self, v: i64) -> Result<(), E> {
        self.top_scalar()?;
        self.put(Scalar::Num(v as f64));
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(mut self, v: u64) -> Result<(), E> {
        self.top_scalar()?;
        self.put(Scalar::Num(v as f64));
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(mut self, v: f64) -> Result<(), E> {
        self.top_scalar()?;
        self.put(Scalar::Num(v));
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(mut self) -> Result<(), E> {
        self.top_scalar()?;
        self.put(Scalar::Null);
        Ok(())
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
}

impl<'s, 'de> NodeSeed<'s, 'de> {
    fn top_scalar<E: serde::de::Error>(&self) -> Result<(), E> {
        if self.top {
            return Err(E::custom("a CloudTrail record must be a JSON object"));
        }
        Ok(())
    }
}

mod document;
#[cfg(test)]
mod tests;
