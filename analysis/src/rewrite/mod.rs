//! Source-to-source rewrites: decouple part of a component into a new component, partition a
//! component by a key, batch a sequential component's requests, and send a broadcast to a
//! quorum (thrifty broadcast). Each checks its precondition on the analysed program and either returns a
//! new, formatted program text (comments kept: rules and declarations move as written) or a
//! refusal that names the rule, atom or relation in the way.
//!
//! Rules are named, for the CLI and code actions, by their 1-based position among the rules of
//! their component (facts included, in source order) or by their head relation's name (every rule
//! with that head, deletions included): see [`select_rules`].

mod batch;
mod context;
mod decouple;
mod grid;
mod nack;
mod seal;
mod share;
mod thrifty;

use serde::Serialize;

use crate::model::{ComponentId, RuleId};
use crate::scaling::{Context, PlacedRelation, RelationPlacement};
use crate::text::TextRange;
use crate::Analysis;

pub use batch::{batch, Batcher, Delivery, DEFAULT_BATCH_SIZE};
pub use decouple::decouple;
pub use grid::{counted_by_quorum, grid, grid_rows_of, nodes_counted, DEFAULT_GRID_ROWS};
pub use seal::{partition_sealed, partition_sealed_in};
pub use share::{share, share_candidates};
pub use thrifty::{broadcasts, quorum_destinations, thrifty, thrifty_rule};

#[derive(Clone, Debug, Serialize)]
pub struct RewriteResult {
    /// The whole rewritten program, formatted.
    pub new_text: String,
    /// Which rewrite applied (e.g. "functional decoupling") and why it is sound, one point per line.
    pub explanation: Vec<String>,
    /// The batcher a batching added: what the deployment records (`[batches]`) so that the cost
    /// model can cost the program, which alone does not say its batch size.
    pub batcher: Option<Batcher>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub reason: String,
    /// The rule, atom or relation that forbids the rewrite.
    pub range: TextRange,
}

impl Refusal {
    pub(crate) fn new(range: TextRange, reason: impl Into<String>) -> Self {
        Refusal { reason: reason.into(), range }
    }
}

pub(crate) fn component(analysis: &Analysis, name: &str) -> Result<ComponentId, Refusal> {
    analysis
        .program
        .component_by_name(name)
        .ok_or_else(|| Refusal::new(TextRange::default(), format!("there is no component `{name}`")))
}

/// Resolve rule selectors of one component: `3` (the third rule, facts included) or `commit`
/// (every rule whose head is `commit`).
pub fn select_rules(analysis: &Analysis, component_name: &str, selectors: &[&str]) -> Result<Vec<RuleId>, Refusal> {
    let id = component(analysis, component_name)?;
    let program = &analysis.program;
    let rules = &program.component(id).rules;
    let mut out = Vec::new();
    for selector in selectors {
        let selector = selector.trim();
        let found: Vec<RuleId> = match selector.parse::<usize>() {
            Ok(n) if program.rule_by_number(id, n).is_some() => program.rule_by_number(id, n).into_iter().collect(),
            Ok(n) => {
                return Err(Refusal::new(
                    program.component(id).name_range,
                    format!("component `{component_name}` has {} rules; there is no rule {n}", rules.len()),
                ))
            }
            Err(_) => rules.iter().copied().filter(|&r| program.rule(r).head.relation == selector).collect(),
        };
        if found.is_empty() {
            return Err(Refusal::new(
                program.component(id).name_range,
                format!("no rule of `{component_name}` has the head `{selector}`"),
            ));
        }
        for r in found {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// Partition a component by a key: adds `partitioned by rel.column, ...` naming the key column of
/// every input and channel (the runtime routes each fact they receive by it).
/// With `key`, only policies that place some relation by a column named `key` are considered.
pub fn partition(analysis: &Analysis, component_name: &str, key: Option<&str>) -> Result<RewriteResult, Refusal> {
    let id = component(analysis, component_name)?;
    let program = &analysis.program;
    let comp = program.component(id);
    // A program that reads which instance it runs on sees the partitioning: no equivalence.
    let reads_instance = comp.rules.iter().find_map(|&r| {
        program.rule(r).atoms().find(|a| a.relation == crate::model::INSTANCE_RELATION).map(|a| a.range)
    });
    if let Some(range) = reads_instance {
        return Err(Refusal::new(
            range,
            format!(
                "`{component_name}` reads `{}`, which changes when it is partitioned: partitioning it would change what it computes",
                crate::model::INSTANCE_RELATION
            ),
        ));
    }
    let ctx = Context::new(program);
    let policies = ctx.policies(id, &comp.rules);
    // With a key: the best policy that places some relation by a column of that name (one key
    // may flow through columns of several names, like `slot` and `s`).
    let chosen = policies.iter().find(|policy| {
        key.is_none_or(|key| {
            policy.iter().any(|p| matches!(&p.placement, RelationPlacement::Key { name, .. } if name == key))
        })
    });
    let Some(policy) = chosen else {
        let verdict = ctx.verdict(id, &comp.rules);
        let conflicts = key.map(|k| ctx.key_conflicts(id, &comp.rules, k)).unwrap_or_default();
        let no_column = key.is_some() && conflicts.is_empty();
        let first = conflicts.first().or(verdict.reasons.iter().find(|r| {
            !matches!(
                r.kind,
                crate::scaling::ReasonKind::Negation
                    | crate::scaling::ReasonKind::Aggregation
                    | crate::scaling::ReasonKind::Deletion
            )
        }));
        let (range, why) = match first {
            Some(r) => (r.range, r.render(program)),
            None if no_column => (comp.name_range, "no input or channel it reads has such a column".to_string()),
            None => (comp.name_range, verdict.summary.clone()),
        };
        let what = key.map_or(String::new(), |k| format!(" by `{k}`"));
        let others = if policies.is_empty() {
            String::new()
        } else {
            format!(" (it can be partitioned by {})", crate::scaling::key_label(program, &policies[0]))
        };
        return Err(Refusal::new(range, format!("`{component_name}` cannot be partitioned{what}{others}: {why}")));
    };
    let keys = routing_keys(analysis, id, policy)?;
    let new_text = splice(analysis.text(), &[placement_edit(analysis, id, &keys)]);
    let mut explanation = vec![format!(
        "co-hashing: `{component_name}` runs as N instances; each fact of {} goes to instance hash(key) mod N",
        keys.join(", ")
    )];
    for p in policy {
        let line = match &p.placement {
            RelationPlacement::Key { name, .. } => format!("`{}` lives with its `{name}`", p.name),
            RelationPlacement::Replicated
                if program.relation(p.relation).kind == crate::model::RelationKind::Input
                    || program.relation(p.relation).kind == crate::model::RelationKind::Channel =>
            {
                format!("`{}` is broadcast to every instance (partial partitioning: it only grows, so no coordinator is needed)", p.name)
            }
            RelationPlacement::Replicated => format!("`{}` is replicated: every instance derives all of it", p.name),
            RelationPlacement::Anywhere => format!("`{}` is used one fact at a time: any instance will do", p.name),
        };
        explanation.push(line);
    }
    explanation.push(
        "every join, aggregate group-by, negation and deletion combines facts that agree on the key, so each instance computes exactly its share"
            .into(),
    );
    finish(new_text, explanation)
}

fn is_source(program: &crate::model::Program, p: &PlacedRelation) -> bool {
    matches!(program.relation(p.relation).kind, crate::model::RelationKind::Input | crate::model::RelationKind::Channel)
}

/// The `rel.column` keys by which the runtime routes a component's inputs and channels under
/// `policy`. Keyed ones go where their key lives; those used one fact at a time may go anywhere,
/// so they are routed by their first column rather than broadcast and processed by every instance.
pub(crate) fn routing_keys(
    analysis: &Analysis,
    id: ComponentId,
    policy: &[PlacedRelation],
) -> Result<Vec<String>, Refusal> {
    let program = &analysis.program;
    if !policy.iter().any(|p| is_source(program, p) && matches!(p.placement, RelationPlacement::Key { .. })) {
        let comp = program.component(id);
        return Err(Refusal::new(
            comp.name_range,
            format!("`{}` receives no input or channel to route by a key", comp.name),
        ));
    }
    Ok(policy
        .iter()
        .filter(|p| is_source(program, p))
        .filter_map(|p| match &p.placement {
            RelationPlacement::Key { name, .. } => Some(format!("{}.{name}", p.name)),
            RelationPlacement::Anywhere => {
                program.relation(p.relation).columns.first().map(|c| format!("{}.{}", p.name, c.name))
            }
            RelationPlacement::Replicated => None,
        })
        .collect())
}

/// The edit that sets a component's `partitioned by` clause to `keys`.
pub(crate) fn placement_edit(analysis: &Analysis, id: ComponentId, keys: &[String]) -> (TextRange, String) {
    let comp = analysis.program.component(id);
    let placement = format!("partitioned by {}", keys.join(", "));
    match &comp.placement {
        Some(existing) => (existing.range, placement),
        None => (TextRange::empty(comp.name_range.end as usize), format!(" {placement}")),
    }
}

/// `base`, or `base2`, `base3`, ...: the first that `taken` does not reject (new relations,
/// components and variables a rewrite introduces).
pub fn unused_name(base: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_string();
    }
    (2..).map(|i| format!("{base}{i}")).find(|n| !taken(n)).unwrap_or_else(|| base.to_string())
}

/// Replace ranges (non-overlapping) of `text`.
pub(crate) fn splice(text: &str, edits: &[(TextRange, String)]) -> String {
    let mut edits: Vec<&(TextRange, String)> = edits.iter().collect();
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = String::with_capacity(text.len());
    let mut at = 0usize;
    for (range, replacement) in edits {
        let start = (range.start as usize).max(at);
        out.push_str(&text[at..start]);
        out.push_str(replacement);
        at = (range.end as usize).max(start);
    }
    out.push_str(&text[at..]);
    out
}

/// Format the new program and make sure it analyses without errors.
pub(crate) fn finish(text: String, explanation: Vec<String>) -> Result<RewriteResult, Refusal> {
    let formatted = crate::fmt::format(&text).map_err(|e| {
        // The error's range is in the rewritten text, not the one the refusal is shown against.
        Refusal::new(
            TextRange::default(),
            format!("internal error: the rewritten program does not parse: {}", e.message),
        )
    })?;
    let analysis = crate::analyze(&formatted);
    if let Some(error) = analysis.diagnostics.iter().find(|d| d.severity == crate::Severity::Error) {
        return Err(Refusal::new(
            TextRange::default(),
            format!("internal error: the rewritten program has an error: {}", error.message),
        ));
    }
    Ok(RewriteResult { new_text: formatted, explanation, batcher: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_applies_edits_in_order_whatever_their_order_given() {
        let edits = vec![(TextRange::new(4, 5), "X".to_string()), (TextRange::empty(0), ">".to_string())];
        assert_eq!(splice("abc def", &edits), ">abc Xef");
    }

    #[test]
    fn select_rules_by_index_and_head() {
        let analysis = crate::analyze(
            "component c {\n channel a(x: int)\n b(x) :- a(x).\n d(x) :- b(x).\n delete b(x) :- b(x).\n}\n",
        );
        let by_head = select_rules(&analysis, "c", &["b"]).unwrap();
        assert_eq!(by_head.len(), 2, "the rule and its deletion");
        assert_eq!(
            select_rules(&analysis, "c", &["2"]).unwrap(),
            vec![analysis.program.component(ComponentId(0)).rules[1]]
        );
        // The number a run report labels a rule with selects that rule.
        for &rule in &analysis.program.component(ComponentId(0)).rules {
            let number = analysis.program.rule_number(rule).to_string();
            assert_eq!(select_rules(&analysis, "c", &[number.as_str()]).unwrap(), [rule]);
        }
        assert!(select_rules(&analysis, "c", &["9"]).unwrap_err().reason.contains("there is no rule 9"));
        assert!(select_rules(&analysis, "c", &["0"]).is_err());
        assert!(select_rules(&analysis, "c", &["zz"]).is_err());
        assert!(select_rules(&analysis, "nope", &["1"]).is_err());
    }
}
