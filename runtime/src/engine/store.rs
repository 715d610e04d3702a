//! Relation storage: interned values, row sets and hash indexes.
//!
//! Inside a node every value is a `u64` whose meaning the column type fixes (ints as two's
//! complement bits, bools 0/1, addresses their index, strings an id in the node's [`Interner`]).
//! Rows are `Arc<[u64]>` so the row set and every index share one allocation per fact.

use std::sync::Arc;

use compart_analysis::model::Type;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::value::{NodeAddr, Value};

pub type Row = Arc<[u64]>;

/// Strings of one node, each with an id that rows store in place of the string.
///
/// Strings no row refers to any more are freed by a collection at the end of a tick (see
/// `engine/gc.rs`), and their ids reused, smallest first; so memory and the largest id follow the
/// strings a node holds, not every string it ever saw. Ids are u64: even without reuse they
/// could not wrap. Nothing here runs per value on the hot path but a counter increment.
#[derive(Clone)]
pub struct Interner {
    /// By id; a freed id holds `vacant`.
    strings: Vec<Arc<str>>,
    ids: FxHashMap<Arc<str>, u64>,
    /// Freed ids, the smallest last (reused first, which keeps `strings` short).
    free: Vec<u64>,
    /// Shared by every freed slot (a distinct allocation, so never equal by pointer to a real `""`).
    vacant: Arc<str>,
    /// Strings added since the last collection, and how many to add before the next one.
    fresh: u64,
    budget: u64,
}

/// Fewest new strings between two collections: a collection's fixed cost is spread over at
/// least this many strings (and this many dead strings, about 100 bytes each, may wait for it).
const MIN_COLLECTION_BUDGET: u64 = 4096;

impl Default for Interner {
    fn default() -> Self {
        Interner {
            strings: Vec::new(),
            ids: FxHashMap::default(),
            free: Vec::new(),
            vacant: Arc::from(""),
            fresh: 0,
            budget: MIN_COLLECTION_BUDGET,
        }
    }
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u64 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        self.insert(Arc::from(s))
    }
    pub fn intern_arc(&mut self, s: &Arc<str>) -> u64 {
        if let Some(&id) = self.ids.get(&**s) {
            return id;
        }
        self.insert(s.clone())
    }
    fn insert(&mut self, s: Arc<str>) -> u64 {
        self.fresh += 1;
        let id = match self.free.pop() {
            Some(id) => {
                self.strings[id as usize] = s.clone();
                id
            }
            None => {
                self.strings.push(s.clone());
                self.strings.len() as u64 - 1
            }
        };
        self.ids.insert(s, id);
        id
    }
    /// The string of a live id (a freed one reads as "": callers only hold live ids).
    pub fn get(&self, id: u64) -> &Arc<str> {
        self.strings.get(id as usize).unwrap_or(&self.vacant)
    }
    /// Live strings.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// One more than the largest id in use: the size of a mark set.
    pub fn id_bound(&self) -> usize {
        self.strings.len()
    }
    /// Enough strings were added since the last collection to pay for the next one.
    pub fn wants_collection(&self) -> bool {
        self.fresh >= self.budget
    }
    /// Frees every string whose id is not set in `live` (a bit set over `0..id_bound()`).
    /// `work` is what finding the live ids cost (values visited): the next collection waits for
    /// at least that many new strings, and as many as are live, so collecting costs O(1) per
    /// string interned and the interner stays within about twice its live size.
    pub fn sweep(&mut self, live: &[u64], work: usize) {
        let marked = |id: usize| live.get(id / 64).is_some_and(|w| w >> (id % 64) & 1 == 1);
        for (id, slot) in self.strings.iter_mut().enumerate() {
            if !marked(id) && !Arc::ptr_eq(slot, &self.vacant) {
                self.ids.remove(&**slot);
                *slot = self.vacant.clone();
            }
        }
        while self.strings.last().is_some_and(|s| Arc::ptr_eq(s, &self.vacant)) {
            self.strings.pop();
        }
        self.free.clear();
        self.free.extend(
            (0..self.strings.len())
                .rev()
                .filter(|&id| Arc::ptr_eq(&self.strings[id], &self.vacant))
                .map(|id| id as u64),
        );
        let live = self.ids.len();
        self.fresh = 0;
        self.budget = MIN_COLLECTION_BUDGET.max(live as u64).max(work as u64);
        // Keep the capacity a steady state needs; give back what a burst left behind.
        let wanted = (live as u64 + self.budget) as usize * 2;
        if self.ids.capacity() > wanted * 2 {
            self.ids.shrink_to(wanted);
        }
        if self.strings.capacity() > wanted * 2 {
            self.strings.shrink_to(wanted);
        }
        if self.free.capacity() > wanted * 2 {
            self.free.shrink_to(wanted);
        }
    }
}

/// Converts an outside value for a column of type `ty`; None when the value has another type.
pub fn encode(interner: &mut Interner, ty: Type, v: &Value) -> Option<u64> {
    Some(match (ty, v) {
        (Type::Int | Type::Unknown, Value::Int(i)) => *i as u64,
        (Type::String, Value::Str(s)) => interner.intern_arc(s),
        (Type::Bool, Value::Bool(b)) => *b as u64,
        (Type::Addr, Value::Addr(a)) => a.0 as u64,
        _ => return None,
    })
}

pub fn decode(interner: &Interner, ty: Type, v: u64) -> Value {
    match ty {
        Type::Int | Type::Unknown => Value::Int(v as i64),
        Type::String => Value::Str(interner.get(v).clone()),
        Type::Bool => Value::Bool(v != 0),
        Type::Addr => Value::Addr(NodeAddr(v as u32)),
    }
}

/// A hash index from the values of some columns to the rows holding them.
#[derive(Clone)]
pub struct Index {
    pub cols: Box<[usize]>,
    pub map: FxHashMap<Box<[u64]>, Vec<Row>>,
}

impl Index {
    fn key_of(&self, row: &[u64], buf: &mut Vec<u64>) {
        buf.clear();
        buf.extend(self.cols.iter().map(|&c| row[c]));
    }
    fn insert(&mut self, row: &Row, buf: &mut Vec<u64>) {
        self.key_of(row, buf);
        match self.map.get_mut(buf.as_slice()) {
            Some(v) => v.push(row.clone()),
            None => {
                self.map.insert(buf.as_slice().into(), vec![row.clone()]);
            }
        }
    }
    fn remove(&mut self, row: &[u64], buf: &mut Vec<u64>) {
        self.key_of(row, buf);
        if let Some(v) = self.map.get_mut(buf.as_slice()) {
            if let Some(pos) = v.iter().position(|r| &**r == row) {
                v.swap_remove(pos);
            }
            if v.is_empty() {
                self.map.remove(buf.as_slice());
            }
        }
    }
}

/// The facts of one relation on one node.
#[derive(Clone)]
pub struct Store {
    pub rows: FxHashSet<Row>,
    pub indexes: Vec<Index>,
    /// Facts that became true in the last round of the current fixpoint (semi-naive delta).
    pub recent: Vec<Row>,
    /// Bumped on every change; cached views compare it.
    pub version: u64,
    buf: Vec<u64>,
}

impl Store {
    pub fn new(index_cols: &[Vec<usize>]) -> Store {
        Store {
            rows: FxHashSet::default(),
            indexes: index_cols
                .iter()
                .map(|cols| Index { cols: cols.clone().into_boxed_slice(), map: FxHashMap::default() })
                .collect(),
            recent: Vec::new(),
            version: 0,
            buf: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn contains(&self, row: &[u64]) -> bool {
        self.rows.contains(row)
    }

    /// Inserts a fact; returns the shared row when it is new.
    pub fn insert(&mut self, row: &[u64]) -> Option<Row> {
        if self.rows.contains(row) {
            return None;
        }
        let row: Row = Arc::from(row);
        self.insert_row(row.clone());
        Some(row)
    }

    fn insert_row(&mut self, row: Row) {
        for index in &mut self.indexes {
            index.insert(&row, &mut self.buf);
        }
        self.rows.insert(row);
        self.version += 1;
    }

    pub fn remove(&mut self, row: &[u64]) -> bool {
        if !self.rows.remove(row) {
            return false;
        }
        for index in &mut self.indexes {
            index.remove(row, &mut self.buf);
        }
        self.version += 1;
        true
    }

    pub fn clear(&mut self) {
        if !self.rows.is_empty() {
            self.rows.clear();
            for index in &mut self.indexes {
                index.map.clear();
            }
            self.version += 1;
        }
        self.recent.clear();
    }

    /// Rows whose columns `indexes[index].cols` equal `key`.
    pub fn probe(&self, index: usize, key: &[u64]) -> &[Row] {
        self.indexes[index].map.get(key).map(|v| v.as_slice()).unwrap_or(&[])
    }
}

/// Registers which column sets of each relation are probed, so every node builds them once.
#[derive(Default, Clone, Debug)]
pub struct IndexRegistry {
    pub per_relation: Vec<Vec<Vec<usize>>>,
}

impl IndexRegistry {
    pub fn new(relations: usize) -> Self {
        IndexRegistry { per_relation: vec![Vec::new(); relations] }
    }
    pub fn get(&mut self, relation: usize, cols: &[usize]) -> usize {
        let list = &mut self.per_relation[relation];
        if let Some(i) = list.iter().position(|c| c == cols) {
            return i;
        }
        list.push(cols.to_vec());
        list.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_indexes_follow_inserts_and_removes() {
        let mut s = Store::new(&[vec![0], vec![1]]);
        assert!(s.insert(&[1, 10]).is_some());
        assert!(s.insert(&[1, 11]).is_some());
        assert!(s.insert(&[1, 10]).is_none());
        assert_eq!(s.probe(0, &[1]).len(), 2);
        assert!(s.remove(&[1, 10]));
        assert!(!s.remove(&[1, 10]));
        assert_eq!(s.probe(0, &[1]).len(), 1);
        assert_eq!(s.probe(1, &[10]).len(), 0);
        s.clear();
        assert!(s.is_empty() && s.probe(0, &[1]).is_empty());
    }

    #[test]
    fn interner_round_trips() {
        let mut i = Interner::default();
        let a = i.intern("a");
        assert_eq!(i.intern("b"), a + 1);
        assert_eq!(i.intern("a"), a);
        let v = decode(&i, Type::String, a);
        assert_eq!(v, Value::str("a"));
        assert_eq!(encode(&mut i, Type::String, &v), Some(a));
        assert_eq!(encode(&mut i, Type::Int, &v), None);
    }
}
