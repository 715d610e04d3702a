//! Linearizability of a key-value history, per key (Wing & Gong's search with memoisation, as in
//! Lowe's and Porcupine's checkers). A put that never answered may take effect at any point after
//! its invocation, or never.

use std::collections::{BTreeMap, HashSet};

use compart_analysis::model::RelationId;

use super::SimResult;
use crate::engine::CompiledProgram;
use crate::value::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    Put {
        value: String,
    },
    /// The value read, None for "not found".
    Get {
        result: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub key: String,
    pub kind: OpKind,
    pub invoke: usize,
    /// None: no answer (yet).
    pub response: Option<usize>,
}

/// The history of the KV example (`put(req, k, v)` / `put_done(req)`, `get(req, k)` /
/// `get_reply(req, k, v, found)`) recorded by the simulator. None when the program lacks them.
pub fn kvs_history(program: &CompiledProgram, result: &SimResult) -> Option<Vec<Op>> {
    let p = &program.program;
    let (put, put_done, get, get_reply) = (
        p.relation_by_name("put")?,
        p.relation_by_name("put_done")?,
        p.relation_by_name("get")?,
        p.relation_by_name("get_reply")?,
    );
    let s = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    let mut ops: BTreeMap<(RelationId, i64), Op> = BTreeMap::new();
    for (index, _, rel, t) in &result.history {
        let req = t.first().and_then(Value::as_int).unwrap_or(-1);
        if *rel == put && t.len() == 3 {
            ops.entry((put, req)).or_insert(Op {
                key: s(&t[1]),
                kind: OpKind::Put { value: s(&t[2]) },
                invoke: *index,
                response: None,
            });
        } else if *rel == get && t.len() == 2 {
            ops.entry((get, req)).or_insert(Op {
                key: s(&t[1]),
                kind: OpKind::Get { result: None },
                invoke: *index,
                response: None,
            });
        } else if *rel == put_done {
            if let Some(op) = ops.get_mut(&(put, req)) {
                op.response.get_or_insert(*index);
            }
        } else if *rel == get_reply && t.len() == 4 {
            if let Some(op) = ops.get_mut(&(get, req)) {
                if op.response.is_none() {
                    op.response = Some(*index);
                    op.kind = OpKind::Get { result: if t[3] == Value::Bool(true) { Some(s(&t[2])) } else { None } };
                }
            }
        }
    }
    // A get that never answered says nothing.
    Some(ops.into_values().filter(|o| !(matches!(o.kind, OpKind::Get { .. }) && o.response.is_none())).collect())
}

/// Ok, or the first key whose operations have no linearization.
pub fn check(ops: &[Op]) -> Result<(), String> {
    let mut keys: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        keys.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in keys {
        if !linearizable(&ops) {
            return Err(key.to_string());
        }
    }
    Ok(())
}

fn linearizable(ops: &[&Op]) -> bool {
    let n = ops.len();
    let end = |o: &Op| o.response.unwrap_or(usize::MAX);
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let words = n.div_ceil(64);
    let done: Vec<bool> = ops.iter().map(|o| o.response.is_some()).collect();
    // Depth-first over (linearized set, register value).
    let mut stack: Vec<(Vec<u64>, Option<String>)> = vec![(vec![0; words], None)];
    while let Some((set, state)) = stack.pop() {
        let taken = |i: usize| set[i / 64] >> (i % 64) & 1 == 1;
        if (0..n).all(|i| !done[i] || taken(i)) {
            return true;
        }
        if !seen.insert((set.clone(), state.clone())) {
            continue;
        }
        // The earliest response among ops not yet linearized bounds which op may go next.
        let horizon = (0..n).filter(|&i| !taken(i)).map(|i| end(ops[i])).min().unwrap_or(usize::MAX);
        for i in 0..n {
            if taken(i) || ops[i].invoke > horizon {
                continue;
            }
            let next_state = match &ops[i].kind {
                OpKind::Put { value } => Some(value.clone()),
                OpKind::Get { result } => {
                    if *result != state {
                        continue;
                    }
                    state.clone()
                }
            };
            let mut next = set.clone();
            next[i / 64] |= 1 << (i % 64);
            stack.push((next, next_state));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: &str, invoke: usize, response: Option<usize>) -> Op {
        Op { key: "k".into(), kind: OpKind::Put { value: v.into() }, invoke, response }
    }
    fn get(r: Option<&str>, invoke: usize, response: usize) -> Op {
        Op { key: "k".into(), kind: OpKind::Get { result: r.map(Into::into) }, invoke, response: Some(response) }
    }

    #[test]
    fn sequential_and_concurrent_histories() {
        assert!(check(&[put("a", 0, Some(1)), get(Some("a"), 2, 3)]).is_ok());
        assert!(check(&[get(None, 0, 1), put("a", 2, Some(3))]).is_ok());
        // A read after a completed write must see it (or a later one).
        assert_eq!(check(&[put("a", 0, Some(1)), get(None, 2, 3)]), Err("k".into()));
        // Concurrent with the write: either value is fine.
        assert!(check(&[put("a", 0, Some(5)), get(None, 1, 2), get(Some("a"), 3, 4)]).is_ok());
        // But not going back once the new value was seen.
        assert!(check(&[put("a", 0, Some(9)), get(Some("a"), 1, 2), get(None, 3, 4)]).is_err());
        // Two writes, reads disagree on their order: not linearizable.
        assert!(check(&[
            put("a", 0, Some(10)),
            put("b", 0, Some(10)),
            get(Some("a"), 11, 12),
            get(Some("b"), 13, 14),
            get(Some("a"), 15, 16)
        ])
        .is_err());
        // An unanswered put may or may not have happened.
        assert!(check(&[put("a", 0, None), get(None, 1, 2), get(Some("a"), 3, 4)]).is_ok());
        assert!(check(&[put("a", 0, None), get(None, 1, 2)]).is_ok());
    }
}
