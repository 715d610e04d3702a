//! What every rewrite asks of a program, computed once: the scaling context (static relations,
//! non-monotone causes, functional dependencies), who derives and who reads each relation, and
//! which component owns it. Rewrites read their preconditions off this instead of walking the
//! program themselves (rust-analyzer's `AssistContext`).

use crate::model::{ComponentId, Program, RelationId, RelationKind, Rule, RuleId, RuleKind};
use crate::scaling::Context;
use crate::Analysis;

pub(crate) struct RewriteContext<'a> {
    pub analysis: &'a Analysis,
    pub program: &'a Program,
    pub text: &'a str,
    pub scaling: Context<'a>,
    /// Rules reading each relation (in a body atom, positive or negated), by `RelationId`.
    readers: Vec<Vec<RuleId>>,
}

impl<'a> RewriteContext<'a> {
    pub fn new(analysis: &'a Analysis) -> Self {
        let program = &analysis.program;
        let mut readers = vec![Vec::new(); program.relations.len()];
        for r in program.rule_ids() {
            for atom in program.rule(r).atoms() {
                if let Some(rel) = atom.relation_id {
                    if !readers[rel.index()].contains(&r) {
                        readers[rel.index()].push(r);
                    }
                }
            }
        }
        RewriteContext { analysis, program, text: analysis.text(), scaling: Context::new(program), readers }
    }

    pub fn component(&self, name: &str) -> Result<ComponentId, super::Refusal> {
        super::component(self.analysis, name)
    }

    /// Rules whose body reads `rel`.
    pub fn readers(&self, rel: RelationId) -> &[RuleId] {
        &self.readers[rel.index()]
    }

    /// Whether any of `rules` reads `rel`.
    pub fn read_by(&self, rules: impl IntoIterator<Item = RuleId>, rel: RelationId) -> bool {
        let readers = self.readers(rel);
        rules.into_iter().any(|r| readers.contains(&r))
    }

    pub fn is_static(&self, rel: RelationId) -> bool {
        self.scaling.is_static[rel.index()]
    }

    pub fn is_builtin(&self, rel: RelationId) -> bool {
        self.program.relation(rel).kind == RelationKind::Builtin
    }

    /// Whether `rel` belongs to component `c`.
    pub fn owned_by(&self, rel: RelationId, c: ComponentId) -> bool {
        self.program.relation(rel).component == Some(c)
    }

    /// The relation of `c` that `rule` derives or deletes from locally (not a message it sends).
    pub fn local_head(&self, c: ComponentId, rule: &Rule) -> Option<RelationId> {
        rule.head.relation_id.filter(|&h| rule.kind != RuleKind::Async && self.owned_by(h, c))
    }

    /// Whether `rule` adds facts to `rel` of `c` (derives it in this or the next tick; facts
    /// included, deletions not).
    pub fn derives(&self, c: ComponentId, rule: RuleId, rel: RelationId) -> bool {
        let rule = self.program.rule(rule);
        rule.kind != RuleKind::Delete && self.local_head(c, rule) == Some(rel)
    }

    /// Whether `rule` is non-monotone: it aggregates, negates or deletes.
    pub fn is_nonmonotone(&self, rule: RuleId) -> bool {
        let r = self.program.rule(rule);
        r.kind == RuleKind::Delete || r.has_aggregate() || !self.scaling.causes[rule.index()].is_empty()
    }
}
