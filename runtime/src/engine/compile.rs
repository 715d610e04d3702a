//! From the program model to evaluation plans: variables become slots, atoms become scans or
//! index probes in a join order fixed here, and every relation learns which indexes it needs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use compart_analysis::model::*;
use compart_analysis::{Analysis, Diagnostic};

use super::store::IndexRegistry;

#[derive(Clone, Debug)]
pub(crate) struct CExpr {
    pub kind: CKind,
    pub ty: Type,
}

#[derive(Clone, Debug)]
pub(crate) enum CKind {
    Var(usize),
    /// An int/bool bit pattern, or the id of a program string (interned first on every node).
    Const(u64),
    SelfAddr,
    Neg(Box<CExpr>),
    Bin(BinaryOp, Box<CExpr>, Box<CExpr>),
    Call(Function, Vec<CExpr>),
}

#[derive(Clone, Debug)]
pub(crate) enum ArgPat {
    Bind(usize),
    Check(CExpr),
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Full,
    /// The facts new in the previous fixpoint round (semi-naive).
    Recent,
}

#[derive(Clone, Debug)]
pub(crate) enum Step {
    Scan {
        rel: usize,
        source: Source,
        pats: Vec<ArgPat>,
    },
    /// Rows whose `index` columns equal `key`; `pats` covers every column (key columns are `Any`).
    Probe {
        rel: usize,
        index: usize,
        key: Vec<CExpr>,
        pats: Vec<ArgPat>,
    },
    /// Every column is known: a membership test.
    Lookup {
        rel: usize,
        row: Vec<CExpr>,
    },
    /// Negated atom: `key` gives the known columns (wildcards are absent); `index` None when the key
    /// is every column (membership) or no column (emptiness).
    Not {
        rel: usize,
        index: Option<usize>,
        cols: Vec<usize>,
        key: Vec<CExpr>,
    },
    Filter {
        left: CExpr,
        op: CompareOp,
        right: CExpr,
    },
    Assign {
        var: usize,
        expr: CExpr,
    },
}

#[derive(Clone, Debug)]
pub(crate) enum HArg {
    Expr(CExpr),
    Agg(AggregateFunc, CExpr),
}

#[derive(Clone, Debug)]
pub(crate) struct HeadPlan {
    pub rel: usize,
    pub dest: Option<CExpr>,
    pub args: Vec<HArg>,
    /// For `rank(x)`: (the rank's argument index, the index of the argument holding `x`).
    pub rank: Option<(usize, usize)>,
}

impl HeadPlan {
    pub fn has_agg(&self) -> bool {
        self.args.iter().any(|a| matches!(a, HArg::Agg(..)))
    }
}

/// An aggregate over one table atom, maintained as the table changes instead of recomputed.
#[derive(Clone, Debug)]
pub(crate) struct IncAggPlan {
    pub table: usize,
    pub pats: Vec<ArgPat>,
}

#[derive(Clone, Debug)]
pub(crate) struct RulePlan {
    pub id: RuleId,
    pub kind: RuleKind,
    pub nvars: usize,
    pub head: HeadPlan,
    pub full: Vec<Step>,
    /// For recursive strata: (relation read from the delta, plan starting with that atom).
    pub deltas: Vec<(usize, Vec<Step>)>,
    pub inc_agg: Option<IncAggPlan>,
}

#[derive(Clone, Debug)]
pub(crate) struct StratumPlan {
    pub rules: Vec<RulePlan>,
    pub recursive: bool,
    pub heads: Vec<usize>,
    /// All heads are views: the stratum re-runs only when a relation it reads changed.
    pub cacheable: bool,
    pub reads: Vec<usize>,
}

#[derive(Clone, Debug)]
pub(crate) struct InvariantPlan {
    pub name: String,
    pub nvars: usize,
    pub steps: Vec<Step>,
    pub args: Vec<CExpr>,
    pub reads: Vec<usize>,
}

#[derive(Clone, Debug)]
pub(crate) struct ComponentPlan {
    pub strata: Vec<StratumPlan>,
    pub deferred: Vec<RulePlan>,
    /// Initial facts: (relation, constant head).
    pub facts: Vec<HeadPlan>,
    pub invariants: Vec<InvariantPlan>,
}

#[derive(Clone, Debug)]
pub(crate) struct RelInfo {
    pub name: String,
    pub kind: RelationKind,
    pub types: Vec<Type>,
    pub component: Option<ComponentId>,
    pub key: Option<Vec<usize>>,
    /// Scratch relation computed from tables only: kept between ticks, refreshed on change.
    pub view: bool,
    pub partition_col: Option<usize>,
    pub has_facts: bool,
}

impl RelInfo {
    /// Gone at the end of the tick.
    pub fn ephemeral(&self) -> bool {
        match self.kind {
            RelationKind::Input | RelationKind::Channel | RelationKind::Output => true,
            RelationKind::Scratch => !self.view,
            RelationKind::Table | RelationKind::Builtin => false,
        }
    }
}

/// A checked program, ready to run on any node of any deployment.
#[derive(Debug)]
pub struct CompiledProgram {
    pub program: Program,
    pub(crate) rels: Vec<RelInfo>,
    pub(crate) components: Vec<ComponentPlan>,
    pub(crate) global_invariants: Vec<InvariantPlan>,
    pub(crate) strings: Vec<Arc<str>>,
    pub(crate) indexes: IndexRegistry,
    pub(crate) nodes_rel: usize,
    pub(crate) instance_rel: usize,
    pub(crate) partner_rel: usize,
    pub(crate) inc_aggs: Vec<(usize, usize, usize)>,
}

impl CompiledProgram {
    /// Refuses programs with errors (returns them).
    pub fn new(analysis: &Analysis) -> Result<CompiledProgram, Vec<Diagnostic>> {
        if analysis.has_errors() {
            return Err(analysis
                .diagnostics
                .iter()
                .filter(|d| d.severity == compart_analysis::Severity::Error)
                .cloned()
                .collect());
        }
        compile(&analysis.program).map_err(|msg| {
            vec![Diagnostic::new(
                compart_analysis::Code::SyntaxError,
                Default::default(),
                format!("cannot compile: {msg}"),
            )]
        })
    }

    /// Compiles an already checked program model (e.g. a rewritten one).
    pub fn from_program(program: &Program) -> Result<CompiledProgram, String> {
        compile(program)
    }

    pub fn relation_name(&self, rel: RelationId) -> &str {
        &self.rels[rel.index()].name
    }

    /// Column of `rel` that decides its instance in a partitioned component (None: replicated).
    pub fn partition_column(&self, rel: RelationId) -> Option<usize> {
        self.rels.get(rel.index()).and_then(|r| r.partition_col)
    }
}

struct Compiler<'a> {
    program: &'a Program,
    rels: Vec<RelInfo>,
    strings: Vec<Arc<str>>,
    string_ids: HashMap<String, u64>,
    indexes: IndexRegistry,
}

fn compile(program: &Program) -> Result<CompiledProgram, String> {
    let nodes_rel = program.relation_by_name(NODES_RELATION).ok_or("no built-in `nodes` relation")?.index();
    let instance_rel = program.relation_by_name(INSTANCE_RELATION).ok_or("no built-in `instance` relation")?.index();
    let partner_rel = program.relation_by_name(PARTNER_RELATION).ok_or("no built-in `partner` relation")?.index();
    let mut rels: Vec<RelInfo> = program
        .relations
        .iter()
        .map(|r| RelInfo {
            name: r.name.clone(),
            kind: r.kind,
            types: r.columns.iter().map(|c| c.ty).collect(),
            component: r.component,
            key: r.key.clone(),
            view: false,
            partition_col: None,
            has_facts: false,
        })
        .collect();
    for rule in &program.rules {
        if rule.kind == RuleKind::Fact {
            if let Some(h) = rule.head.relation_id {
                rels[h.index()].has_facts = true;
            }
        }
    }
    classify_views(program, &mut rels);
    for rid in program.relation_ids() {
        rels[rid.index()].partition_col = program.partition_column(rid);
    }
    let mut compiler = Compiler {
        program,
        rels,
        strings: Vec::new(),
        string_ids: HashMap::new(),
        indexes: IndexRegistry::new(program.relations.len()),
    };
    for c in &program.components {
        compiler.string(&c.name);
    }
    let mut components = Vec::new();
    let mut inc_aggs = Vec::new();
    for (ci, c) in program.components.iter().enumerate() {
        let mut strata = Vec::new();
        for (si, s) in c.strata.iter().enumerate() {
            let heads: Vec<usize> = {
                let mut h: Vec<usize> =
                    s.rules.iter().filter_map(|&r| program.rule(r).head.relation_id).map(|r| r.index()).collect();
                h.sort();
                h.dedup();
                h
            };
            let mut rules = Vec::new();
            for (ri, &rid) in s.rules.iter().enumerate() {
                let plan = compiler.rule(rid, if s.recursive { &heads } else { &[] })?;
                if plan.inc_agg.is_some() {
                    inc_aggs.push((ci, si, ri));
                }
                rules.push(plan);
            }
            let mut reads: Vec<usize> = s
                .rules
                .iter()
                .flat_map(|&r| program.rule(r).atoms().filter_map(|a| a.relation_id).map(|r| r.index()))
                .filter(|r| !heads.contains(r))
                .collect();
            reads.sort();
            reads.dedup();
            let cacheable = heads.iter().all(|&h| compiler.rels[h].view) && rules.iter().all(|r| r.inc_agg.is_none());
            strata.push(StratumPlan { rules, recursive: s.recursive, heads, cacheable, reads });
        }
        let mut deferred = Vec::new();
        let mut facts = Vec::new();
        for &rid in &c.rules {
            let rule = program.rule(rid);
            if rule.kind.is_deferred() {
                deferred.push(compiler.rule(rid, &[])?);
            } else if rule.kind == RuleKind::Fact {
                let mut vars = HashMap::new();
                facts.push(compiler.head(rule, &mut vars)?);
            }
        }
        let mut invariants = Vec::new();
        for &iid in &c.invariants {
            invariants.push(compiler.invariant(iid)?);
        }
        components.push(ComponentPlan { strata, deferred, facts, invariants });
    }
    let mut global_invariants = Vec::new();
    for (i, inv) in program.invariants.iter().enumerate() {
        if inv.component.is_none() {
            global_invariants.push(compiler.invariant(InvariantId(i as u32))?);
        }
    }
    Ok(CompiledProgram {
        program: program.clone(),
        rels: compiler.rels,
        components,
        global_invariants,
        strings: compiler.strings,
        indexes: compiler.indexes,
        nodes_rel,
        instance_rel,
        partner_rel,
        inc_aggs,
    })
}

/// A scratch relation is a view when every rule deriving it is same-tick and reads only tables,
/// `nodes` and other views (greatest fixpoint: recursion among views is fine).
fn classify_views(program: &Program, rels: &mut [RelInfo]) {
    let mut candidate: Vec<bool> = rels.iter().map(|r| r.kind == RelationKind::Scratch && !r.has_facts).collect();
    let mut derived = vec![false; rels.len()];
    for rule in &program.rules {
        if let Some(h) = rule.head.relation_id {
            derived[h.index()] = true;
            if rule.kind != RuleKind::SameTick && rule.kind != RuleKind::Delete {
                candidate[h.index()] = false;
            }
        }
    }
    loop {
        let mut changed = false;
        for rule in &program.rules {
            let Some(h) = rule.head.relation_id else { continue };
            if !candidate[h.index()] || rule.kind != RuleKind::SameTick {
                continue;
            }
            let ok = rule.atoms().all(|a| match a.relation_id {
                Some(r) => match rels[r.index()].kind {
                    RelationKind::Table | RelationKind::Builtin => true,
                    RelationKind::Scratch => candidate[r.index()],
                    _ => false,
                },
                None => false,
            });
            if !ok {
                candidate[h.index()] = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (i, r) in rels.iter_mut().enumerate() {
        r.view = candidate[i] && derived[i];
    }
}

impl Compiler<'_> {
    fn string(&mut self, s: &str) -> u64 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u64;
        self.strings.push(Arc::from(s));
        self.string_ids.insert(s.to_string(), id);
        id
    }

    fn expr(&mut self, e: &Expr, vars: &HashMap<String, (usize, Type)>) -> Result<CExpr, String> {
        Ok(match &e.kind {
            ExprKind::Var(name) => {
                let &(slot, ty) = vars.get(name).ok_or_else(|| format!("unknown variable `{name}`"))?;
                CExpr { kind: CKind::Var(slot), ty }
            }
            ExprKind::Int(i) => CExpr { kind: CKind::Const(*i as u64), ty: Type::Int },
            ExprKind::Bool(b) => CExpr { kind: CKind::Const(*b as u64), ty: Type::Bool },
            ExprKind::Str(s) => CExpr { kind: CKind::Const(self.string(s)), ty: Type::String },
            ExprKind::SelfAddr => CExpr { kind: CKind::SelfAddr, ty: Type::Addr },
            ExprKind::Neg(inner) => CExpr { kind: CKind::Neg(Box::new(self.expr(inner, vars)?)), ty: Type::Int },
            ExprKind::Binary(op, a, b) => {
                let ty = match op {
                    BinaryOp::Concat => Type::String,
                    BinaryOp::And | BinaryOp::Or => Type::Bool,
                    _ => Type::Int,
                };
                CExpr { kind: CKind::Bin(*op, Box::new(self.expr(a, vars)?), Box::new(self.expr(b, vars)?)), ty }
            }
            ExprKind::Call(f, args) => {
                let args = args.iter().map(|a| self.expr(a, vars)).collect::<Result<Vec<_>, _>>()?;
                CExpr { kind: CKind::Call(*f, args), ty: f.result_type() }
            }
            ExprKind::Wildcard => return Err("`_` outside an atom".into()),
            ExprKind::Error => return Err("expression with errors".into()),
        })
    }

    fn var_table(vars: &[Variable]) -> HashMap<String, (usize, Type)> {
        vars.iter().enumerate().map(|(i, v)| (v.name.clone(), (i, v.ty))).collect()
    }

    fn head(&mut self, rule: &Rule, vars: &mut HashMap<String, (usize, Type)>) -> Result<HeadPlan, String> {
        let rel = rule.head.relation_id.ok_or("unresolved head")?.index();
        let dest = rule.head.destination.as_ref().map(|d| self.expr(d, vars)).transpose()?;
        let mut args = Vec::new();
        for (i, a) in rule.head.args.iter().enumerate() {
            args.push(match a {
                HeadArg::Expr(e) => {
                    let mut c = self.expr(e, vars)?;
                    // Literals take the column's type (e.g. an int literal in an unknown column).
                    if let Some(&t) = self.rels[rel].types.get(i) {
                        if c.ty == Type::Unknown {
                            c.ty = t;
                        }
                    }
                    HArg::Expr(c)
                }
                HeadArg::Aggregate(agg) => HArg::Agg(agg.func, self.expr(&agg.arg, vars)?),
            });
        }
        Ok(HeadPlan { rel, dest, args, rank: rule.rank_columns() })
    }

    fn rule(&mut self, id: RuleId, stratum_heads: &[usize]) -> Result<RulePlan, String> {
        let program = self.program;
        let rule = program.rule(id);
        let mut vars = Self::var_table(&rule.variables);
        let full = self.body(&rule.body, &vars, None)?;
        let mut deltas = Vec::new();
        for (i, item) in rule.body.iter().enumerate() {
            if let BodyItem::Atom(a) = item {
                let Some(r) = a.relation_id else { continue };
                if !a.negated && stratum_heads.contains(&r.index()) {
                    deltas.push((r.index(), self.body(&rule.body, &vars, Some(i))?));
                }
            }
        }
        let head = self.head(rule, &mut vars)?;
        // Incrementally maintained aggregate: a lone table atom feeding a scratch relation that
        // no other rule derives.
        let mut inc_agg = None;
        // Not for `rank`: one insert can renumber every fact of its group.
        if rule.kind == RuleKind::SameTick && head.has_agg() && head.rank.is_none() && rule.body.len() == 1 {
            if let (BodyItem::Atom(atom), [Step::Scan { rel, pats, .. }]) = (&rule.body[0], full.as_slice()) {
                let only_rule = program.rules_deriving(RelationId(head.rel as u32)).count() == 1;
                if !atom.negated
                    && self.rels[*rel].kind == RelationKind::Table
                    && self.rels[head.rel].kind == RelationKind::Scratch
                    && only_rule
                {
                    inc_agg = Some(IncAggPlan { table: *rel, pats: pats.clone() });
                    self.rels[head.rel].view = true;
                }
            }
        }
        Ok(RulePlan { id, kind: rule.kind, nvars: rule.variables.len(), head, full, deltas, inc_agg })
    }

    fn invariant(&mut self, id: InvariantId) -> Result<InvariantPlan, String> {
        let inv = self.program.invariant(id);
        let vars = Self::var_table(&inv.variables);
        let steps = self.body(&inv.body, &vars, None)?;
        let args = inv.args.iter().map(|a| self.expr(a, &vars)).collect::<Result<Vec<_>, _>>()?;
        let mut reads: Vec<usize> =
            compart_analysis::model::atoms(&inv.body).filter_map(|a| a.relation_id).map(|r| r.index()).collect();
        reads.sort();
        reads.dedup();
        Ok(InvariantPlan { name: inv.name.clone(), nvars: inv.variables.len(), steps, args, reads })
    }

    /// Orders a body into steps. `delta`: index of the atom read from the semi-naive delta.
    fn body(
        &mut self,
        body: &[BodyItem],
        vars: &HashMap<String, (usize, Type)>,
        delta: Option<usize>,
    ) -> Result<Vec<Step>, String> {
        // Variables some positive atom binds: an `=` on them is a test, not a binding.
        let mut atom_bound: HashSet<usize> = HashSet::new();
        for a in atoms(body) {
            if !a.negated {
                for arg in &a.args {
                    if let Some(name) = arg.as_var() {
                        if let Some(&(slot, _)) = vars.get(name) {
                            atom_bound.insert(slot);
                        }
                    }
                }
            }
        }
        let mut bound: HashSet<usize> = HashSet::new();
        let mut pending: Vec<usize> = (0..body.len()).collect();
        let mut steps = Vec::new();
        if let Some(d) = delta {
            let BodyItem::Atom(a) = &body[d] else { return Err("delta on a condition".into()) };
            steps.push(self.atom_step(a, vars, &mut bound, Source::Recent)?);
            pending.retain(|&i| i != d);
        }
        loop {
            // Conditions and negations as soon as their variables are bound.
            let mut progress = true;
            while progress {
                progress = false;
                let mut k = 0;
                while k < pending.len() {
                    let i = pending[k];
                    let placed = match &body[i] {
                        BodyItem::Condition(c) => self.condition_step(c, vars, &mut bound, &atom_bound)?,
                        BodyItem::Atom(a) if a.negated => self.negation_step(a, vars, &bound)?,
                        BodyItem::Atom(_) => None,
                    };
                    if let Some(step) = placed {
                        steps.push(step);
                        pending.remove(k);
                        progress = true;
                    } else {
                        k += 1;
                    }
                }
            }
            let positives: Vec<usize> =
                pending.iter().copied().filter(|&i| matches!(&body[i], BodyItem::Atom(a) if !a.negated)).collect();
            if positives.is_empty() {
                break;
            }
            let best = positives
                .iter()
                .copied()
                .max_by_key(|&i| {
                    let BodyItem::Atom(a) = &body[i] else { unreachable!() };
                    let score = self.atom_score(a, vars, &bound);
                    (score, std::cmp::Reverse(i))
                })
                .unwrap_or(positives[0]);
            let BodyItem::Atom(a) = &body[best] else { unreachable!() };
            steps.push(self.atom_step(a, vars, &mut bound, Source::Full)?);
            pending.retain(|&i| i != best);
        }
        if !pending.is_empty() {
            return Err("a condition or negation uses variables no atom binds".into());
        }
        Ok(steps)
    }

    fn known_cols(&self, a: &Atom, vars: &HashMap<String, (usize, Type)>, bound: &HashSet<usize>) -> Vec<usize> {
        let mut out = Vec::new();
        for (col, arg) in a.args.iter().enumerate() {
            let known = match &arg.kind {
                ExprKind::Wildcard => false,
                _ => {
                    let mut vs = Vec::new();
                    arg.variables(&mut vs);
                    vs.iter().all(|(n, _)| vars.get(*n).is_some_and(|(s, _)| bound.contains(s)))
                }
            };
            if known {
                out.push(col);
            }
        }
        out
    }

    /// Higher is earlier: at most one row, then facts of this tick, then scratch relations (usually
    /// smaller than tables), then index probes, then singletons and `nodes`.
    fn atom_score(
        &self,
        a: &Atom,
        vars: &HashMap<String, (usize, Type)>,
        bound: &HashSet<usize>,
    ) -> (bool, bool, bool, bool, bool, usize) {
        let rel = &self.rels[a.relation_id.map(|r| r.index()).unwrap_or(0)];
        let known = self.known_cols(a, vars, bound);
        let unique =
            known.len() == a.args.len() || rel.key.as_ref().is_some_and(|k| k.iter().all(|c| known.contains(c)));
        let small = rel.key.as_ref().is_some_and(|k| k.is_empty()) || rel.kind == RelationKind::Builtin;
        (unique, rel.ephemeral(), rel.kind == RelationKind::Scratch, !known.is_empty(), small, known.len())
    }

    fn atom_step(
        &mut self,
        a: &Atom,
        vars: &HashMap<String, (usize, Type)>,
        bound: &mut HashSet<usize>,
        source: Source,
    ) -> Result<Step, String> {
        let rel = a.relation_id.ok_or("unresolved atom")?.index();
        let known = if source == Source::Full { self.known_cols(a, vars, bound) } else { Vec::new() };
        let mut pats = Vec::new();
        let mut key = Vec::new();
        for (col, arg) in a.args.iter().enumerate() {
            if known.contains(&col) {
                key.push(self.expr(arg, vars)?);
                pats.push(ArgPat::Any);
                continue;
            }
            pats.push(match &arg.kind {
                ExprKind::Wildcard => ArgPat::Any,
                ExprKind::Var(name) => {
                    let &(slot, _) = vars.get(name).ok_or_else(|| format!("unknown variable `{name}`"))?;
                    if bound.insert(slot) {
                        ArgPat::Bind(slot)
                    } else {
                        ArgPat::Check(CExpr { kind: CKind::Var(slot), ty: Type::Unknown })
                    }
                }
                _ => ArgPat::Check(self.expr(arg, vars)?),
            });
        }
        if source == Source::Recent || key.is_empty() {
            return Ok(Step::Scan { rel, source, pats });
        }
        if known.len() == a.args.len() {
            return Ok(Step::Lookup { rel, row: key });
        }
        let index = self.indexes.get(rel, &known);
        Ok(Step::Probe { rel, index, key, pats })
    }

    fn negation_step(
        &mut self,
        a: &Atom,
        vars: &HashMap<String, (usize, Type)>,
        bound: &HashSet<usize>,
    ) -> Result<Option<Step>, String> {
        let rel = a.relation_id.ok_or("unresolved atom")?.index();
        let known = self.known_cols(a, vars, bound);
        let non_wild = a.args.iter().filter(|e| !matches!(e.kind, ExprKind::Wildcard)).count();
        if known.len() < non_wild {
            return Ok(None);
        }
        let key = known.iter().map(|&c| self.expr(&a.args[c], vars)).collect::<Result<Vec<_>, _>>()?;
        let index =
            if known.is_empty() || known.len() == a.args.len() { None } else { Some(self.indexes.get(rel, &known)) };
        Ok(Some(Step::Not { rel, index, cols: known, key }))
    }

    fn condition_step(
        &mut self,
        c: &Condition,
        vars: &HashMap<String, (usize, Type)>,
        bound: &mut HashSet<usize>,
        atom_bound: &HashSet<usize>,
    ) -> Result<Option<Step>, String> {
        let all_bound = |e: &Expr, bound: &HashSet<usize>| {
            let mut vs = Vec::new();
            e.variables(&mut vs);
            vs.iter().all(|(n, _)| vars.get(*n).is_some_and(|(s, _)| bound.contains(s)))
        };
        if c.op == CompareOp::Assign {
            if let Some(name) = c.left.as_var() {
                let &(slot, _) = vars.get(name).ok_or_else(|| format!("unknown variable `{name}`"))?;
                if !atom_bound.contains(&slot) && !bound.contains(&slot) {
                    if !all_bound(&c.right, bound) {
                        return Ok(None);
                    }
                    let expr = self.expr(&c.right, vars)?;
                    bound.insert(slot);
                    return Ok(Some(Step::Assign { var: slot, expr }));
                }
            }
        }
        if !all_bound(&c.left, bound) || !all_bound(&c.right, bound) {
            return Ok(None);
        }
        let op = if c.op == CompareOp::Assign { CompareOp::Eq } else { c.op };
        let mut left = self.expr(&c.left, vars)?;
        let mut right = self.expr(&c.right, vars)?;
        // Comparisons need the operand type (strings compare by content, ints signed).
        if left.ty == Type::Unknown {
            left.ty = right.ty;
        }
        if right.ty == Type::Unknown {
            right.ty = left.ty;
        }
        Ok(Some(Step::Filter { left, op, right }))
    }
}
