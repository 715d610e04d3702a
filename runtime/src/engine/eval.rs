//! The join interpreter: runs a plan's steps as nested loops over scans and index probes.

use std::cmp::Ordering;

use compart_analysis::model::{AggregateFunc, BinaryOp, CompareOp, Function, Type};
use rustc_hash::FxHashMap;

use super::compile::{ArgPat, CExpr, CKind, HArg, HeadPlan, Source, Step};
use super::store::Interner;
use super::stores::Stores;
use crate::deploy::Deployment;
use crate::value::{NodeAddr, StableHasher};

pub(crate) struct Env<'a> {
    pub interner: &'a mut Interner,
    pub deployment: &'a Deployment,
    pub self_addr: u64,
    pub div_by_zero: u64,
}

impl Env<'_> {
    fn hash_value(&self, h: &mut StableHasher, ty: Type, v: u64) {
        match ty {
            Type::Int | Type::Unknown => h.int(v as i64),
            Type::String => h.string(self.interner.get(v)),
            Type::Bool => h.bool(v != 0),
            Type::Addr => h.addr(NodeAddr(v as u32)),
        }
    }

    fn text_of(&mut self, ty: Type, v: u64) -> u64 {
        let text = match ty {
            Type::Int | Type::Unknown => (v as i64).to_string(),
            Type::String => return v,
            Type::Bool => (v != 0).to_string(),
            Type::Addr => match self.deployment.node(NodeAddr(v as u32)) {
                Some(n) => match self.deployment.node(n.logical) {
                    Some(l) => l.address.to_string(),
                    None => n.address.to_string(),
                },
                None => format!("#{v}"),
            },
        };
        self.interner.intern(&text)
    }

    pub fn compare(&self, ty: Type, a: u64, b: u64) -> Ordering {
        match ty {
            Type::String => {
                if a == b {
                    Ordering::Equal
                } else {
                    self.interner.get(a).as_bytes().cmp(self.interner.get(b).as_bytes())
                }
            }
            Type::Int | Type::Unknown => (a as i64).cmp(&(b as i64)),
            Type::Bool | Type::Addr => a.cmp(&b),
        }
    }
}

/// None when a division by zero makes this match produce nothing.
pub(crate) fn eval(e: &CExpr, vars: &[u64], env: &mut Env) -> Option<u64> {
    Some(match &e.kind {
        CKind::Var(v) => vars[*v],
        CKind::Const(c) => *c,
        CKind::SelfAddr => env.self_addr,
        CKind::Neg(inner) => (eval(inner, vars, env)? as i64).wrapping_neg() as u64,
        CKind::Bin(op, a, b) => {
            let x = eval(a, vars, env)?;
            let y = eval(b, vars, env)?;
            let (i, j) = (x as i64, y as i64);
            match op {
                BinaryOp::Add => i.wrapping_add(j) as u64,
                BinaryOp::Sub => i.wrapping_sub(j) as u64,
                BinaryOp::Mul => i.wrapping_mul(j) as u64,
                BinaryOp::Div | BinaryOp::Rem if j == 0 => {
                    env.div_by_zero += 1;
                    return None;
                }
                BinaryOp::Div => i.wrapping_div(j) as u64,
                BinaryOp::Rem => i.wrapping_rem(j) as u64,
                BinaryOp::And => (x != 0 && y != 0) as u64,
                BinaryOp::Or => (x != 0 || y != 0) as u64,
                BinaryOp::Concat => {
                    let s = format!("{}{}", env.interner.get(x), env.interner.get(y));
                    env.interner.intern(&s)
                }
            }
        }
        CKind::Call(f, args) => match f {
            Function::Hash => {
                let mut h = StableHasher::default();
                for a in args {
                    let v = eval(a, vars, env)?;
                    env.hash_value(&mut h, a.ty, v);
                }
                h.finish() as u64
            }
            Function::Min | Function::Max => {
                let a = eval(&args[0], vars, env)? as i64;
                let b = eval(&args[1], vars, env)? as i64;
                (if *f == Function::Min { a.min(b) } else { a.max(b) }) as u64
            }
            Function::Abs => (eval(&args[0], vars, env)? as i64).wrapping_abs() as u64,
            Function::Str => {
                let v = eval(&args[0], vars, env)?;
                env.text_of(args[0].ty, v)
            }
        },
    })
}

fn compare(op: CompareOp, ty: Type, a: u64, b: u64, env: &Env) -> bool {
    match op {
        CompareOp::Assign | CompareOp::Eq => a == b,
        CompareOp::Ne => a != b,
        CompareOp::Lt => env.compare(ty, a, b) == Ordering::Less,
        CompareOp::Le => env.compare(ty, a, b) != Ordering::Greater,
        CompareOp::Gt => env.compare(ty, a, b) == Ordering::Greater,
        CompareOp::Ge => env.compare(ty, a, b) != Ordering::Less,
    }
}

#[inline]
pub(crate) fn match_pats(pats: &[ArgPat], row: &[u64], vars: &mut [u64], env: &mut Env) -> bool {
    for (col, pat) in pats.iter().enumerate() {
        match pat {
            ArgPat::Any => {}
            ArgPat::Bind(s) => vars[*s] = row[col],
            ArgPat::Check(e) => match eval(e, vars, env) {
                Some(v) if v == row[col] => {}
                _ => return false,
            },
        }
    }
    true
}

/// Small key buffer on the stack for the common short keys.
fn eval_key<R>(exprs: &[CExpr], vars: &[u64], env: &mut Env, f: impl FnOnce(&[u64], &mut Env) -> R) -> Option<R> {
    if exprs.len() <= 8 {
        let mut buf = [0u64; 8];
        for (i, e) in exprs.iter().enumerate() {
            buf[i] = eval(e, vars, env)?;
        }
        Some(f(&buf[..exprs.len()], env))
    } else {
        let mut buf = Vec::with_capacity(exprs.len());
        for e in exprs {
            buf.push(eval(e, vars, env)?);
        }
        Some(f(&buf, env))
    }
}

/// Runs `steps` and calls `emit` with the variable slots of every match.
pub(crate) fn run(
    steps: &[Step],
    stores: &Stores,
    vars: &mut [u64],
    env: &mut Env,
    emit: &mut dyn FnMut(&[u64], &mut Env),
) {
    let Some((step, rest)) = steps.split_first() else {
        emit(vars, env);
        return;
    };
    match step {
        Step::Scan { rel, source, pats } => {
            let store = &stores[*rel];
            match source {
                Source::Full => {
                    for row in store.rows.iter() {
                        if match_pats(pats, row, vars, env) {
                            run(rest, stores, vars, env, emit);
                        }
                    }
                }
                Source::Recent => {
                    for row in store.recent.iter() {
                        if match_pats(pats, row, vars, env) {
                            run(rest, stores, vars, env, emit);
                        }
                    }
                }
            }
        }
        Step::Probe { rel, index, key, pats } => {
            let store = &stores[*rel];
            let rows = eval_key(key, vars, env, |k, _| store.probe(*index, k)).unwrap_or(&[]);
            for row in rows {
                if match_pats(pats, row, vars, env) {
                    run(rest, stores, vars, env, emit);
                }
            }
        }
        Step::Lookup { rel, row } => {
            let store = &stores[*rel];
            if eval_key(row, vars, env, |k, _| store.contains(k)) == Some(true) {
                run(rest, stores, vars, env, emit);
            }
        }
        Step::Not { rel, index, cols, key } => {
            let store = &stores[*rel];
            let exists = match index {
                None if cols.is_empty() => Some(!store.is_empty()),
                None => eval_key(key, vars, env, |k, _| store.contains(k)),
                Some(i) => eval_key(key, vars, env, |k, _| !store.probe(*i, k).is_empty()),
            };
            if exists == Some(false) {
                run(rest, stores, vars, env, emit);
            }
        }
        Step::Filter { left, op, right } => {
            let (Some(a), Some(b)) = (eval(left, vars, env), eval(right, vars, env)) else { return };
            if compare(*op, left.ty, a, b, env) {
                run(rest, stores, vars, env, emit);
            }
        }
        Step::Assign { var, expr } => {
            if let Some(v) = eval(expr, vars, env) {
                vars[*var] = v;
                run(rest, stores, vars, env, emit);
            }
        }
    }
}

/// Width of a head's evaluated rows: the destination (for `:~`) then one column per argument.
/// The rows of a flat buffer of `width`-wide rows; a zero-width relation holds one empty row or none.
pub(crate) fn rows_of(flat: &[u64], width: usize) -> Vec<&[u64]> {
    match width {
        0 if flat.is_empty() => Vec::new(),
        0 => vec![&[]],
        _ => flat.chunks_exact(width).collect(),
    }
}

pub(crate) fn head_width(head: &HeadPlan) -> usize {
    head.dest.is_some() as usize + head.args.len()
}

/// Appends the head row for one match to `out`; false (and nothing appended) on division by zero.
pub(crate) fn push_head(head: &HeadPlan, vars: &[u64], env: &mut Env, out: &mut Vec<u64>) -> bool {
    let start = out.len();
    if let Some(d) = &head.dest {
        match eval(d, vars, env) {
            Some(v) => out.push(v),
            None => {
                out.truncate(start);
                return false;
            }
        }
    }
    for a in &head.args {
        let e = match a {
            HArg::Expr(e) | HArg::Agg(_, e) => e,
        };
        match eval(e, vars, env) {
            Some(v) => out.push(v),
            None => {
                out.truncate(start);
                return false;
            }
        }
    }
    true
}

/// Folds rows of (group columns, aggregated values) into one row per group.
pub(crate) fn aggregate(head: &HeadPlan, rows: &[u64], env: &Env) -> Vec<u64> {
    let width = head_width(head);
    if width == 0 {
        return Vec::new();
    }
    let off = head.dest.is_some() as usize;
    if let Some((r, x)) = head.rank {
        let ty = match &head.args[r] {
            HArg::Agg(_, e) | HArg::Expr(e) => e.ty,
        };
        return rank(rows, width, off + r, off + x, ty, env);
    }
    let agg_cols: Vec<(usize, AggregateFunc, Type)> = head
        .args
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match a {
            HArg::Agg(f, e) => Some((i + off, *f, e.ty)),
            HArg::Expr(_) => None,
        })
        .collect();
    let group_cols: Vec<usize> = (0..width).filter(|c| !agg_cols.iter().any(|a| a.0 == *c)).collect();
    let mut groups: FxHashMap<Box<[u64]>, Vec<Vec<u64>>> = FxHashMap::default();
    let mut order: Vec<Box<[u64]>> = Vec::new();
    for row in rows.chunks_exact(width) {
        let key: Box<[u64]> = group_cols.iter().map(|&c| row[c]).collect();
        let entry = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            vec![Vec::new(); agg_cols.len()]
        });
        for (k, &(c, _, _)) in agg_cols.iter().enumerate() {
            entry[k].push(row[c]);
        }
    }
    let mut out = Vec::with_capacity(order.len() * width);
    for key in order {
        let mut values = groups.remove(&key).unwrap_or_default();
        let mut row = vec![0u64; width];
        for (k, &c) in group_cols.iter().enumerate() {
            row[c] = key[k];
        }
        for (k, &(c, f, ty)) in agg_cols.iter().enumerate() {
            let vs = &mut values[k];
            vs.sort_unstable();
            vs.dedup();
            row[c] = fold(f, ty, vs.iter().copied(), env);
        }
        out.extend_from_slice(&row);
    }
    out
}

/// `rank(x)`: one row per distinct (group, x), numbered from 1 in increasing order of `x` within
/// its group; the group is every column but the rank's (`r`) and `x`'s. A sort per group.
fn rank(rows: &[u64], width: usize, r: usize, x: usize, ty: Type, env: &Env) -> Vec<u64> {
    let group_cols: Vec<usize> = (0..width).filter(|&c| c != r && c != x).collect();
    let mut groups: FxHashMap<Box<[u64]>, Vec<u64>> = FxHashMap::default();
    let mut order: Vec<Box<[u64]>> = Vec::new();
    for row in rows.chunks_exact(width) {
        let key: Box<[u64]> = group_cols.iter().map(|&c| row[c]).collect();
        groups
            .entry(key)
            .or_insert_with_key(|k| {
                order.push(k.clone());
                Vec::new()
            })
            .push(row[x]);
    }
    let mut out = Vec::with_capacity(rows.len());
    for key in order {
        let mut values = groups.remove(&key).unwrap_or_default();
        // Equal values have equal codes (ints are themselves, strings interned): dedup after sort.
        values.sort_unstable_by(|&a, &b| env.compare(ty, a, b).then(a.cmp(&b)));
        values.dedup();
        for (i, v) in values.into_iter().enumerate() {
            let start = out.len();
            out.resize(start + width, 0);
            for (k, &c) in group_cols.iter().enumerate() {
                out[start + c] = key[k];
            }
            out[start + x] = v;
            out[start + r] = i as u64 + 1;
        }
    }
    out
}

/// One aggregate over distinct values (non-empty).
pub(crate) fn fold(f: AggregateFunc, ty: Type, values: impl Iterator<Item = u64>, env: &Env) -> u64 {
    match f {
        AggregateFunc::Count => values.count() as u64,
        AggregateFunc::Sum => values.fold(0i64, |s, v| s.wrapping_add(v as i64)) as u64,
        AggregateFunc::Min | AggregateFunc::Choose => values.min_by(|&a, &b| env.compare(ty, a, b)).unwrap_or(0),
        AggregateFunc::Max => values.max_by(|&a, &b| env.compare(ty, a, b)).unwrap_or(0),
        // Not a fold: `aggregate` numbers the values with `rank` instead.
        AggregateFunc::Rank => values.count() as u64,
    }
}
