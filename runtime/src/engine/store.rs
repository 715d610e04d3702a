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

/// Strings of one node. Ids are never reused; strings are never freed (a node that sees an
/// unbounded number of distinct strings grows; tables usually hold them anyway).
#[derive(Default, Clone)]
pub struct Interner {
    strings: Vec<Arc<str>>,
    ids: FxHashMap<Arc<str>, u32>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u64 {
        if let Some(&id) = self.ids.get(s) {
            return id as u64;
        }
        let arc: Arc<str> = Arc::from(s);
        let id = self.strings.len() as u32;
        self.strings.push(arc.clone());
        self.ids.insert(arc, id);
        id as u64
    }
    pub fn intern_arc(&mut self, s: &Arc<str>) -> u64 {
        if let Some(&id) = self.ids.get(&**s) {
            return id as u64;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.clone());
        self.ids.insert(s.clone(), id);
        id as u64
    }
    pub fn get(&self, id: u64) -> &Arc<str> {
        &self.strings[id as usize]
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
