//! A node's relation stores, indexed by relation index like a `Vec<Store>`, but holding stores only
//! for the relations its component owns and the built-ins, in a few runs of consecutive indexes. A node never reads or writes another component's relations, so
//! a dense vector cost every node about 100 bytes per relation of the whole program: with
//! thousands of components, nodes x relations dominated the simulator's memory.

use std::ops::{Index, IndexMut};

use super::store::Store;

#[derive(Clone)]
pub struct Stores {
    /// Number of relations of the program (what a dense vector's length would be).
    total: usize,
    /// Runs of consecutive relation indexes the node holds: (first index, their stores). A
    /// component's relations make a few runs (its declared relations, the scratch relations
    /// lowering added later, the built-ins), the largest first.
    runs: Vec<(usize, Vec<Store>)>,
    /// What any other relation reads as.
    empty: Store,
    /// Where writes to any other relation go (none are expected: they are dropped, not kept).
    sink: Store,
}

/// Gaps up to this many relations inside a run are filled with empty stores rather than
/// starting a new run (fewer runs to test on every access).
const MAX_GAP: usize = 8;

impl Stores {
    /// Every relation, densely (the global checker reads every component's relations).
    pub fn dense(stores: Vec<Store>) -> Stores {
        Stores { total: stores.len(), runs: vec![(0, stores)], empty: Store::new(&[]), sink: Store::new(&[]) }
    }

    /// Stores for the relation indexes `held` (below `total`); `make` builds the store of one.
    pub fn sparse(total: usize, held: &[usize], make: impl Fn(usize) -> Store) -> Stores {
        let mut held: Vec<usize> = held.iter().copied().filter(|&i| i < total).collect();
        held.sort_unstable();
        held.dedup();
        let mut runs: Vec<(usize, Vec<Store>)> = Vec::new();
        for i in held {
            match runs.last_mut() {
                Some((lo, stores)) if i - (*lo + stores.len()) <= MAX_GAP => {
                    while *lo + stores.len() < i {
                        stores.push(Store::new(&[]));
                    }
                    stores.push(make(i));
                }
                _ => runs.push((i, vec![make(i)])),
            }
        }
        runs.sort_by_key(|(_, stores)| std::cmp::Reverse(stores.len()));
        Stores { total, runs, empty: Store::new(&[]), sink: Store::new(&[]) }
    }

    /// The store of relation `rel`, None past the program's relations.
    pub fn get(&self, rel: usize) -> Option<&Store> {
        (rel < self.total).then(|| &self[rel])
    }

    /// Every relation's store in index order (empty ones for relations the node does not hold).
    pub fn iter(&self) -> impl Iterator<Item = &Store> {
        (0..self.total).map(|r| &self[r])
    }
}

impl Index<usize> for Stores {
    type Output = Store;
    #[inline]
    fn index(&self, rel: usize) -> &Store {
        for (lo, stores) in &self.runs {
            if let Some(s) = stores.get(rel.wrapping_sub(*lo)) {
                return s;
            }
        }
        &self.empty
    }
}

impl IndexMut<usize> for Stores {
    #[inline]
    fn index_mut(&mut self, rel: usize) -> &mut Store {
        let run = self.runs.iter().position(|(lo, stores)| rel.wrapping_sub(*lo) < stores.len());
        match run {
            Some(r) => {
                let (lo, stores) = &mut self.runs[r];
                &mut stores[rel - *lo]
            }
            None => &mut self.sink,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_a_dense_vector_and_holds_only_its_relations() {
        let mut stores = Stores::sparse(40, &[4, 5, 7, 0, 2, 30, 31], |_| Store::new(&[]));
        // 0..8 (gaps filled) and 30..32.
        assert_eq!(stores.runs.iter().map(|(lo, s)| (*lo, s.len())).collect::<Vec<_>>(), [(0, 8), (30, 2)]);
        for r in [0, 2, 4, 5, 7, 31] {
            stores[r].insert(&[r as u64]);
        }
        let held: Vec<usize> = stores.iter().enumerate().filter(|(_, s)| !s.is_empty()).map(|(i, _)| i).collect();
        assert_eq!(held, [0, 2, 4, 5, 7, 31]);
        // Another component's relation (9) reads empty; a write to it is not kept.
        stores[9].insert(&[9]);
        assert!(stores[9].is_empty());
        assert!(stores.get(40).is_none());
        assert_eq!(stores.get(31).map(Store::len), Some(1));
    }

    /// A node holds its own component's relations and the built-ins, not the whole program's
    /// (2,000 components took 1.8 GB in the simulator, every node holding every relation and the
    /// `partner` pairs of every two components); `nodes` and `partner` only where read.
    #[test]
    fn a_node_of_a_large_program_holds_only_what_its_component_uses() {
        use std::sync::Arc;
        let copies = 300;
        let mut src = String::new();
        let mut counts = Vec::new();
        for i in 0..copies {
            src.push_str(&format!(
                "component leader{i} {{
                    input req{i}(id: int) key(id)
                    table seen{i}(id: int)
                    seen{i}(id) :- req{i}(id).
                    ballot{i}@p(id) :~ req{i}(id), nodes(\"voter{i}\", p).
                }}
                component voter{i} {{
                    channel ballot{i}(id: int)
                    table got{i}(id: int)
                    got{i}(id) :- ballot{i}(id).
                    mine{i}(a) :- partner(a, b), got{i}(_), b = a.
                }}\n"
            ));
            counts.push((format!("leader{i}"), 1));
            counts.push((format!("voter{i}"), 1));
        }
        let analysis = compart_analysis::analyze(&src);
        assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics.first());
        let program = Arc::new(super::super::CompiledProgram::new(&analysis).unwrap());
        let names: Vec<(&str, u32)> = counts.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        let deployment = Arc::new(crate::deploy::Deployment::local(&analysis.program, &names));
        let relations = analysis.program.relations.len();
        assert!(relations > 1_000, "{relations}");
        let nodes = analysis.program.relation_by_name("nodes").unwrap();
        let partner = analysis.program.relation_by_name("partner").unwrap();
        for name in ["leader150/0", "voter150/0"] {
            let addr = deployment.by_name(name).unwrap();
            let node = super::super::Node::new(program.clone(), addr, deployment.clone());
            let held: usize = node.state.stores.runs.iter().map(|(_, s)| s.len()).sum();
            assert!(held < 20, "{name} holds {held} stores of {relations}");
            let leader = name.starts_with("leader");
            // The leader reads `nodes` (not `partner`), the voter `partner` (not `nodes`).
            assert_eq!(node.facts_len(nodes), if leader { 2 * copies } else { 0 }, "{name}");
            assert_eq!(node.facts_len(partner) > 0, !leader, "{name}");
        }
    }
}
