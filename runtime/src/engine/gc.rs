//! Freeing the strings no fact refers to any more (see [`super::store::Interner`]).
//!
//! A mark and sweep at the end of a tick, when enough new strings were interned to pay for it:
//! ephemeral relations are empty then, so the only ids left are in tables, views, the `:+` facts
//! waiting for the next tick, the state of incremental aggregates, and the program's constants.
//! Chosen over reference counts, which would cost an increment and a decrement per string value
//! on every row insert and delete (the hot path, and ephemeral rows are inserted and dropped
//! every tick); a collection costs a scan of the rows with string columns, paid once per that
//! many new strings, and nothing per tick but one comparison.

use compart_analysis::model::Type;

use super::compile::HArg;
use super::Node;

/// Columns of these types may hold string ids (`Unknown` too, conservatively: marking an int as
/// an id only keeps a string a little longer).
fn holds_ids(t: Type) -> bool {
    matches!(t, Type::String | Type::Unknown)
}

struct Marks(Vec<u64>);

impl Marks {
    fn set(&mut self, id: u64) {
        if let Some(w) = self.0.get_mut((id / 64) as usize) {
            *w |= 1 << (id % 64);
        }
    }
    /// Marks the values of `row` in the columns whose `types` hold ids; the values visited.
    fn row(&mut self, row: &[u64], types: impl IntoIterator<Item = bool>) -> usize {
        let mut n = 0;
        for (&v, ids) in row.iter().zip(types) {
            if ids {
                self.set(v);
                n += 1;
            }
        }
        n
    }
}

impl Node {
    /// Runs a collection if enough strings were interned since the last one. Only at the end of
    /// a tick (see the module documentation for why then).
    pub(super) fn maybe_collect_strings(&mut self) {
        if self.state.interner.wants_collection() {
            self.collect_strings();
        }
    }

    pub(super) fn collect_strings(&mut self) {
        let bound = self.state.interner.id_bound();
        let mut marks = Marks(vec![0; bound.div_ceil(64)]);
        let mut work = bound;
        // Compiled plans hold the program's constants by id: interned first, so ids 0..n.
        for id in 0..self.program.strings.len() {
            marks.set(id as u64);
        }
        for (store, info) in self.state.stores.iter().zip(&self.program.rels) {
            let cols: Vec<usize> = (0..info.types.len()).filter(|&c| holds_ids(info.types[c])).collect();
            if cols.is_empty() || store.is_empty() {
                continue;
            }
            for row in &store.rows {
                for &c in &cols {
                    marks.set(row[c]);
                }
            }
            work += store.len() * cols.len();
        }
        for (rel, row) in &self.next_tick {
            work += marks.row(row, self.program.rels[*rel].types.iter().map(|&t| holds_ids(t)));
        }
        let comp = &self.program.components[self.component.index()];
        for inc in &self.state.inc {
            let plan = &comp.strata[inc.stratum].rules[inc.rule];
            let types = &self.program.rels[plan.head.rel].types;
            // Either the column's or the expression's type: whichever says string.
            let col_ids = |i: usize, t: Type| holds_ids(t) || types.get(i).is_some_and(|&c| holds_ids(c));
            let key_ids: Vec<bool> = plan
                .head
                .args
                .iter()
                .enumerate()
                .filter_map(|(i, a)| match a {
                    HArg::Expr(e) => Some(col_ids(i, e.ty)),
                    HArg::Agg(..) => None,
                })
                .collect();
            let agg_ids: Vec<bool> = plan
                .head
                .args
                .iter()
                .enumerate()
                .filter_map(|(i, a)| match a {
                    HArg::Agg(_, e) => Some(col_ids(i, e.ty)),
                    HArg::Expr(_) => None,
                })
                .collect();
            for (key, group) in &inc.groups {
                work += marks.row(key, key_ids.iter().copied());
                for (values, &ids) in group.values.iter().zip(&agg_ids) {
                    if ids {
                        for &(v, _) in values.values() {
                            marks.set(v);
                        }
                        work += values.len();
                    }
                }
            }
            for key in &inc.dirty {
                work += marks.row(key, key_ids.iter().copied());
            }
            for (key, row) in &inc.current {
                work += marks.row(key, key_ids.iter().copied());
                work += marks.row(row, types.iter().map(|&t| holds_ids(t)));
            }
        }
        self.state.interner.sweep(&marks.0, work);
    }
}

impl Node {
    /// Strings this node holds interned (what [`Node::tick`]'s collections keep bounded).
    pub fn interned_strings(&self) -> usize {
        self.state.interner.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use compart_analysis::model::RelationId;

    use super::super::store::Interner;
    use super::super::{CompiledProgram, Node};
    use crate::deploy::Deployment;
    use crate::value::{NodeAddr, Tuple, Value};

    fn node(src: &str) -> (Node, compart_analysis::Program) {
        let analysis = compart_analysis::analyze(src);
        let program = Arc::new(CompiledProgram::new(&analysis).unwrap());
        let d = Arc::new(Deployment::local(&analysis.program, &[]));
        (Node::new(program, NodeAddr(0), d), analysis.program)
    }

    /// Every string passes through a table that the next tick empties: the interner must not
    /// keep them all (it kept every string ever seen, with u32 ids).
    #[test]
    fn strings_no_table_holds_are_freed() {
        let (mut n, p) = node(
            "component c {
                input put(k: string)
                output got(k: string)
                table held(k: string)
                held(k) :- put(k).
                got(k) :- put(k).
                delete held(k) :- held(k).
            }",
        );
        let put = p.relation_by_name("put").unwrap();
        let held = p.relation_by_name("held").unwrap();
        let mut peak = 0;
        for i in 0..60_000 {
            let out = n.tick(vec![(put, vec![Value::from(format!("payload{i}"))])]);
            assert_eq!(
                out.outputs,
                vec![(p.relation_by_name("got").unwrap(), vec![Value::from(format!("payload{i}"))])]
            );
            peak = peak.max(n.state.interner.id_bound());
        }
        assert_eq!(n.facts(held), Vec::<Tuple>::new());
        assert!(n.interned_strings() < 10_000, "{} strings kept", n.interned_strings());
        assert!(peak < 10_000, "ids up to {peak}: freed ids are reused");
    }

    #[test]
    fn freed_ids_are_reused_and_live_ones_keep_their_string() {
        let mut i = Interner::default();
        let a = i.intern("a");
        let b = i.intern("b");
        let c = i.intern("c");
        let mut live = vec![0u64];
        live[0] |= 1 << a;
        live[0] |= 1 << c;
        i.sweep(&live, 0);
        assert_eq!((i.len(), &**i.get(a), &**i.get(c)), (2, "a", "c"));
        assert_eq!(i.intern("d"), b, "the freed id comes back");
        assert_eq!(i.intern("a"), a);
        assert_eq!(&**i.get(b), "d");
        // A real "" is a string like any other, not a freed slot.
        let e = i.intern("");
        i.sweep(&[u64::MAX], 0);
        assert_eq!((i.len(), i.intern("")), (4, e));
        i.sweep(&[0], 0);
        assert_eq!((i.len(), i.id_bound()), (0, 0), "trailing freed ids are dropped");
    }

    /// The same workload with a collection after every tick and with none: identical outputs and
    /// facts, through tables, views, `:+` facts, maintained aggregates over strings, and strings
    /// made by the program (`++`).
    #[test]
    fn collections_never_change_what_a_node_computes() {
        let src = "component c {
            input put(k: string, v: string, n: int)
            input drop(k: string)
            output seen(k: string, best: string, count: int)
            output later(k: string)
            output made(s: string)
            table kv(k: string, v: string)
            kv(k, v) :- put(k, v, _).
            delete kv(k, v) :- kv(k, v), drop(k).
            best(k, choose(v)) :- kv(k, v).
            per_key(k, count(v)) :- kv(k, v).
            seen(k, b, c) :- put(k, _, _), best(k, b), per_key(k, c).
            later(k) :+ drop(k).
            made(k ++ \"/\" ++ v) :- put(k, v, n), n % 3 == 0.
        }";
        let (mut a, p) = node(src);
        let (mut b, _) = node(src);
        let put = p.relation_by_name("put").unwrap();
        let drop = p.relation_by_name("drop").unwrap();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        let rels: Vec<RelationId> = ["kv", "best", "per_key"].iter().map(|r| p.relation_by_name(r).unwrap()).collect();
        for tick in 0..3000 {
            let mut inputs = Vec::new();
            for _ in 0..next(4) {
                let k = format!("k{}", next(40));
                let v = format!("v{}-{tick}", next(1000));
                inputs.push((put, vec![Value::from(k), Value::from(v), Value::Int(next(10) as i64)]));
            }
            if next(3) == 0 {
                inputs.push((drop, vec![Value::from(format!("k{}", next(40)))]));
            }
            let mut oa = a.tick(inputs.clone());
            let mut ob = b.tick(inputs);
            b.collect_strings();
            oa.outputs.sort();
            ob.outputs.sort();
            assert_eq!(oa, ob, "tick {tick}");
            if tick % 100 == 0 {
                for &r in &rels {
                    assert_eq!(a.facts(r), b.facts(r), "tick {tick}");
                }
            }
        }
        assert!(b.interned_strings() < a.interned_strings(), "{} vs {}", b.interned_strings(), a.interned_strings());
    }
}
