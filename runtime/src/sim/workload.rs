//! Workload generation: input facts with values drawn by column type.

use std::sync::Arc;

use compart_analysis::model::{RelationId, RelationKind, Type};

use super::Rng;
use crate::deploy::Deployment;
use crate::engine::CompiledProgram;
use crate::value::{NodeAddr, Tuple, Value};

#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    /// Percentage of scheduler events that inject an input (when any remain).
    pub input_percent: u32,
    /// Relative weights of input relations by name; empty: every input relation, weight 1.
    /// A weight of 0 disables a relation.
    pub weights: Vec<(String, u32)>,
    /// Ints that are not identifiers are drawn from `0..int_range`.
    pub int_range: i64,
    /// At most this many inputs per schedule.
    pub max_inputs: usize,
    /// Chance that an input carrying a request identifier is sent again, later, to another node
    /// of the same component: a client that retries elsewhere (e.g. to another proposer).
    pub resend: f64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec { input_percent: 15, weights: Vec::new(), int_range: 4, max_inputs: 40, resend: 0.2 }
    }
}

impl WorkloadSpec {
    /// Parses `rel=weight,rel=weight` (the CLI's `--workload`).
    pub fn parse_weights(text: &str) -> Result<Vec<(String, u32)>, String> {
        text.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let (name, w) = p.split_once('=').ok_or_else(|| format!("`{p}`: expected relation=weight"))?;
                let w: u32 = w.trim().parse().map_err(|_| format!("`{p}`: weight must be a non-negative integer"))?;
                Ok((name.trim().to_string(), w))
            })
            .collect()
    }
}

struct Choice {
    relation: RelationId,
    weight: u32,
    types: Vec<Type>,
    /// Columns holding request identifiers: unique per schedule.
    unique: Vec<bool>,
    targets: Vec<NodeAddr>,
}

pub(crate) struct Generator {
    choices: Vec<Choice>,
    strings: Vec<Arc<str>>,
    addrs: Vec<NodeAddr>,
    next_id: i64,
    /// A copy of an earlier input for another node, sent as the next input.
    resend: Option<(NodeAddr, RelationId, Tuple)>,
    emitted: usize,
    spec: WorkloadSpec,
}

const ID_NAMES: [&str; 5] = ["id", "req", "txn", "rid", "request"];

impl Generator {
    pub fn new(program: &CompiledProgram, deployment: &Deployment, spec: &WorkloadSpec) -> Generator {
        let mut choices = Vec::new();
        for rid in program.program.relation_ids() {
            let rel = program.program.relation(rid);
            if rel.kind != RelationKind::Input {
                continue;
            }
            let weight = if spec.weights.is_empty() {
                1
            } else {
                spec.weights.iter().find(|(n, _)| *n == rel.name).map(|w| w.1).unwrap_or(0)
            };
            let targets: Vec<NodeAddr> =
                deployment.logical_nodes().filter(|n| Some(n.component) == rel.component).map(|n| n.addr).collect();
            if weight == 0 || targets.is_empty() {
                continue;
            }
            let key = rel.key.clone().unwrap_or_default();
            let unique = rel
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| c.ty == Type::Int && (key.contains(&i) || ID_NAMES.contains(&c.name.as_str())))
                .collect();
            choices.push(Choice {
                relation: rid,
                weight,
                types: rel.columns.iter().map(|c| c.ty).collect(),
                unique,
                targets,
            });
        }
        let mut strings: Vec<Arc<str>> =
            program.strings.iter().filter(|s| program.program.component_by_name(s).is_none()).cloned().collect();
        strings.extend(["x", "y"].map(Arc::from));
        let addrs = deployment.logical_nodes().map(|n| n.addr).collect();
        Generator { choices, strings, addrs, next_id: 1, resend: None, emitted: 0, spec: spec.clone() }
    }

    pub fn next(&mut self, rng: &mut Rng) -> Option<(NodeAddr, RelationId, Tuple)> {
        if self.choices.is_empty() || self.emitted >= self.spec.max_inputs {
            return None;
        }
        if let Some(copy) = self.resend.take() {
            self.emitted += 1;
            return Some(copy);
        }
        let total: u64 = self.choices.iter().map(|c| c.weight as u64).sum();
        let mut pick = rng.below(total);
        let choice = self
            .choices
            .iter()
            .find(|c| {
                if pick < c.weight as u64 {
                    true
                } else {
                    pick -= c.weight as u64;
                    false
                }
            })
            .unwrap_or(&self.choices[0]);
        let mut tuple = Vec::with_capacity(choice.types.len());
        for (i, &ty) in choice.types.iter().enumerate() {
            tuple.push(match ty {
                Type::Int | Type::Unknown if choice.unique[i] => {
                    self.next_id += 1;
                    Value::Int(self.next_id - 1)
                }
                Type::Int | Type::Unknown => Value::Int(rng.below(self.spec.int_range.max(1) as u64) as i64),
                Type::String => Value::Str(self.strings[rng.below(self.strings.len() as u64) as usize].clone()),
                Type::Bool => Value::Bool(rng.chance(0.5)),
                Type::Addr => Value::Addr(self.addrs[rng.below(self.addrs.len().max(1) as u64) as usize]),
            });
        }
        let pick = rng.below(choice.targets.len() as u64) as usize;
        let node = choice.targets[pick];
        if choice.targets.len() > 1 && choice.unique.iter().any(|&u| u) && rng.chance(self.spec.resend) {
            let other = (pick + 1 + rng.below(choice.targets.len() as u64 - 1) as usize) % choice.targets.len();
            self.resend = Some((choice.targets[other], choice.relation, tuple.clone()));
        }
        self.emitted += 1;
        Some((node, choice.relation, tuple))
    }
}
