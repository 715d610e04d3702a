//! The typed program model: what a `.ded` file means, independent of its concrete syntax.
//!
//! Everything carries the source range it came from so diagnostics, the editor and rewrites can
//! point back into the text. Ids are indexes into the [`Program`]'s vectors.

use rustc_hash::FxHashMap;

use serde::Serialize;

use crate::text::TextRange;

macro_rules! id_type {
    ($name:ident) => {
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize)]
        pub struct $name(pub u32);
        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}
id_type!(ComponentId);
id_type!(RelationId);
id_type!(RuleId);
id_type!(InvariantId);

/// Name of the built-in relation listing the deployment: `nodes(component, address)`.
pub const NODES_RELATION: &str = "nodes";

/// Name of the built-in relation `instance(index, count)`: this node is instance `index` (from 0)
/// of the `count` instances of its logical node (`instance(0, 1)` when not partitioned). Sealed
/// partitioning tags the parts of a reply with it, so that the receiver can recombine them.
pub const INSTANCE_RELATION: &str = "instance";

/// Name of the built-in relation `partner(a, b)`: `b` is the logical node of another component at
/// the same position as `a` in its own (index of `a` modulo the number of nodes of `b`'s
/// component). Decoupling forwards with it, so that each node of a replicated component keeps
/// its own partner instead of all of them sharing one node.
pub const PARTNER_RELATION: &str = "partner";

/// The built-in relations: given by the deployment, never declared.
pub const BUILTIN_RELATIONS: [&str; 3] = [NODES_RELATION, INSTANCE_RELATION, PARTNER_RELATION];

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Type {
    Int,
    String,
    Bool,
    Addr,
    /// Not known: an undeclared column nothing constrains, or the result of an error already reported.
    Unknown,
}

impl Type {
    pub fn from_name(name: &str) -> Option<Type> {
        Some(match name {
            "int" => Type::Int,
            "string" => Type::String,
            "bool" => Type::Bool,
            "addr" => Type::Addr,
            _ => return None,
        })
    }
    pub const NAMES: [&'static str; 4] = ["int", "string", "bool", "addr"];
    pub fn is_known(self) -> bool {
        self != Type::Unknown
    }
}

impl std::fmt::Display for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Type::Int => "int",
            Type::String => "string",
            Type::Bool => "bool",
            Type::Addr => "addr",
            Type::Unknown => "?",
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelationKind {
    Input,
    Output,
    Table,
    Channel,
    Scratch,
    /// `nodes(component, address)`: the deployment, visible in every component.
    Builtin,
}

impl RelationKind {
    pub fn keyword(self) -> &'static str {
        match self {
            RelationKind::Input => "input",
            RelationKind::Output => "output",
            RelationKind::Table => "table",
            RelationKind::Channel => "channel",
            RelationKind::Scratch => "scratch",
            RelationKind::Builtin => "builtin",
        }
    }
    pub fn from_keyword(word: &str) -> Option<RelationKind> {
        Some(match word {
            "input" => RelationKind::Input,
            "output" => RelationKind::Output,
            "table" => RelationKind::Table,
            "channel" => RelationKind::Channel,
            "scratch" => RelationKind::Scratch,
            _ => return None,
        })
    }
    /// Facts of this kind survive the end of a tick.
    pub fn is_persistent(self) -> bool {
        self == RelationKind::Table
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Column {
    pub name: String,
    pub name_range: TextRange,
    pub ty: Type,
    /// The written type, or None for a column of an undeclared relation (inferred).
    pub ty_range: Option<TextRange>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Relation {
    pub name: String,
    pub kind: RelationKind,
    /// The declaring component; None for the built-in `nodes`.
    pub component: Option<ComponentId>,
    pub columns: Vec<Column>,
    /// Columns of a declared `key(...)`: they determine the others.
    pub key: Option<Vec<usize>>,
    /// Where it is declared, or the head of its first deriving rule when undeclared.
    pub name_range: TextRange,
    pub range: TextRange,
    pub declared: bool,
}

impl Relation {
    pub fn arity(&self) -> usize {
        self.columns.len()
    }
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PartitionKey {
    /// `p2a.slot` names one relation; plain `slot` applies to every relation with that column.
    pub relation: Option<(String, TextRange)>,
    pub column: String,
    pub column_range: TextRange,
    pub range: TextRange,
}

#[derive(Clone, Debug, Serialize)]
pub struct Placement {
    pub keys: Vec<PartitionKey>,
    pub range: TextRange,
}

#[derive(Clone, Debug, Serialize)]
pub struct Component {
    pub name: String,
    pub name_range: TextRange,
    pub range: TextRange,
    pub placement: Option<Placement>,
    pub relations: Vec<RelationId>,
    pub rules: Vec<RuleId>,
    pub invariants: Vec<InvariantId>,
    /// Same-tick rules grouped into strata, in evaluation order (filled by stratification).
    pub strata: Vec<Stratum>,
    /// The first syntax error inside the component, if it did not parse cleanly: what it contains
    /// is then only what the parser could recover, and conclusions drawn from what is absent from
    /// it (no rule reads or fills a relation) may be wrong.
    #[serde(skip)]
    pub syntax_error: Option<TextRange>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Stratum {
    pub rules: Vec<RuleId>,
    /// Some rule reads a relation derived in this same stratum: needs a fixpoint loop.
    pub recursive: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// `:-` derives within the tick.
    SameTick,
    /// `:+` derives for the next tick.
    NextTick,
    /// `rel@dest(..) :~` sends to another node.
    Async,
    /// `delete rel(..) :- ...` removes table facts from the next tick on.
    Delete,
    /// `rel(consts).`: an initial fact.
    Fact,
}

impl RuleKind {
    /// Runs after the tick's fixpoint, over its final state.
    pub fn is_deferred(self) -> bool {
        matches!(self, RuleKind::NextTick | RuleKind::Async | RuleKind::Delete)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Rule {
    pub component: ComponentId,
    pub kind: RuleKind,
    pub head: Head,
    pub body: Vec<BodyItem>,
    pub range: TextRange,
    /// The `:-`/`:+`/`:~` operator, or the final `.` of a fact.
    pub op_range: TextRange,
    /// Variables of the rule with their inferred types, in order of first appearance.
    pub variables: Vec<Variable>,
}

impl Rule {
    /// For a message `r@d(..) :~ .., nodes("X", d)`: the component `X` it goes to, with the first
    /// argument of a `partner(a, d)` atom when it picks one node of `X` (a's partner) rather than
    /// every node.
    pub fn addressee(&self) -> Option<(&str, Option<&Expr>)> {
        let dest = self.head.destination.as_ref()?.as_var()?;
        let binds_dest = |a: &&Atom| a.args.get(1).and_then(|e| e.as_var()) == Some(dest);
        let component =
            self.atoms().filter(|a| a.relation == NODES_RELATION).filter(binds_dest).find_map(|a| {
                match a.args.first().map(|e| &e.kind) {
                    Some(ExprKind::Str(name)) => Some(name.as_str()),
                    _ => None,
                }
            })?;
        let partner_of =
            self.atoms().filter(|a| a.relation == PARTNER_RELATION).find(binds_dest).and_then(|a| a.args.first());
        Some((component, partner_of))
    }

    pub fn has_aggregate(&self) -> bool {
        self.head.args.iter().any(|a| matches!(a, HeadArg::Aggregate(_)))
    }
    /// For a head with `rank(x)`: the rank's column and the column that holds `x` itself
    /// (E0309 requires one; the first bare `x` when there are several).
    pub fn rank_columns(&self) -> Option<(usize, usize)> {
        let args = &self.head.args;
        let (rank, var) = args.iter().enumerate().find_map(|(i, a)| match a {
            HeadArg::Aggregate(agg) if agg.func == AggregateFunc::Rank => Some((i, agg.arg.as_var()?)),
            _ => None,
        })?;
        let ranked = args.iter().position(|a| matches!(a, HeadArg::Expr(e) if e.as_var() == Some(var)))?;
        Some((rank, ranked))
    }
    /// The head columns an aggregate groups by: the non-aggregate ones, except the ranked
    /// variable's column under `rank` (values are ranked within the group, not grouped by).
    pub fn group_by_columns(&self) -> Vec<usize> {
        let ranked = self.rank_columns().map(|(_, c)| c);
        (0..self.head.args.len())
            .filter(|&i| matches!(self.head.args[i], HeadArg::Expr(_)) && Some(i) != ranked)
            .collect()
    }
    pub fn atoms(&self) -> impl Iterator<Item = &Atom> {
        atoms(&self.body)
    }
}

pub fn atoms(body: &[BodyItem]) -> impl Iterator<Item = &Atom> {
    body.iter().filter_map(|item| match item {
        BodyItem::Atom(atom) => Some(atom),
        BodyItem::Condition(_) => None,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct Variable {
    pub name: String,
    pub ty: Type,
    pub first_range: TextRange,
}

#[derive(Clone, Debug, Serialize)]
pub struct Head {
    pub relation: String,
    pub relation_range: TextRange,
    pub relation_id: Option<RelationId>,
    pub destination: Option<Expr>,
    pub args: Vec<HeadArg>,
    pub range: TextRange,
}

#[derive(Clone, Debug, Serialize)]
pub enum HeadArg {
    Expr(Expr),
    Aggregate(Aggregate),
}

impl HeadArg {
    pub fn range(&self) -> TextRange {
        match self {
            HeadArg::Expr(e) => e.range,
            HeadArg::Aggregate(a) => a.range,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AggregateFunc {
    Count,
    Sum,
    Min,
    Max,
    Choose,
    /// Not a fold: one fact per value of its variable, numbered 1, 2, ... in increasing order
    /// within the group (the other head columns, except the ranked variable's own column).
    Rank,
}

impl AggregateFunc {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "count" => AggregateFunc::Count,
            "sum" => AggregateFunc::Sum,
            "min" => AggregateFunc::Min,
            "max" => AggregateFunc::Max,
            "choose" => AggregateFunc::Choose,
            "rank" => AggregateFunc::Rank,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            AggregateFunc::Count => "count",
            AggregateFunc::Sum => "sum",
            AggregateFunc::Min => "min",
            AggregateFunc::Max => "max",
            AggregateFunc::Choose => "choose",
            AggregateFunc::Rank => "rank",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Aggregate {
    pub func: AggregateFunc,
    pub arg: Expr,
    pub range: TextRange,
}

#[derive(Clone, Debug, Serialize)]
pub enum BodyItem {
    Atom(Atom),
    Condition(Condition),
}

impl BodyItem {
    pub fn range(&self) -> TextRange {
        match self {
            BodyItem::Atom(a) => a.range,
            BodyItem::Condition(c) => c.range,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Atom {
    pub negated: bool,
    pub relation: String,
    pub relation_range: TextRange,
    pub relation_id: Option<RelationId>,
    pub args: Vec<Expr>,
    pub range: TextRange,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
pub enum CompareOp {
    /// `=`: binds the left variable when it is unbound, else tests equality.
    Assign,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    /// Whether `l op r` holds, given how `l` compares with `r` (`=` tests equality here).
    pub fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CompareOp::Assign | CompareOp::Eq => ordering == Equal,
            CompareOp::Ne => ordering != Equal,
            CompareOp::Lt => ordering == Less,
            CompareOp::Le => ordering != Greater,
            CompareOp::Gt => ordering == Greater,
            CompareOp::Ge => ordering != Less,
        }
    }
    pub fn from_token(token: &str) -> Option<Self> {
        Some(match token {
            "=" => CompareOp::Assign,
            "==" => CompareOp::Eq,
            "!=" => CompareOp::Ne,
            "<" => CompareOp::Lt,
            "<=" => CompareOp::Le,
            ">" => CompareOp::Gt,
            ">=" => CompareOp::Ge,
            _ => return None,
        })
    }
    pub fn token(self) -> &'static str {
        match self {
            CompareOp::Assign => "=",
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Condition {
    pub left: Expr,
    pub op: CompareOp,
    pub right: Expr,
    pub range: TextRange,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Concat,
    And,
    Or,
}

impl BinaryOp {
    pub fn from_token(token: &str) -> Option<Self> {
        Some(match token {
            "+" => BinaryOp::Add,
            "-" => BinaryOp::Sub,
            "*" => BinaryOp::Mul,
            "/" => BinaryOp::Div,
            "%" => BinaryOp::Rem,
            "++" => BinaryOp::Concat,
            "&&" => BinaryOp::And,
            "||" => BinaryOp::Or,
            _ => return None,
        })
    }
    /// Binding strength, as in the grammar's `PREC` (grammar/grammar.js); all are left-associative.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Concat => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => 5,
        }
    }
    pub fn token(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Concat => "++",
            BinaryOp::And => "&&",
            BinaryOp::Or => "||",
        }
    }
}

/// Built-in scalar functions.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    Hash,
    Min,
    Max,
    Abs,
    Str,
}

impl Function {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "hash" => Function::Hash,
            "min" => Function::Min,
            "max" => Function::Max,
            "abs" => Function::Abs,
            "str" => Function::Str,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Function::Hash => "hash",
            Function::Min => "min",
            Function::Max => "max",
            Function::Abs => "abs",
            Function::Str => "str",
        }
    }
    pub const NAMES: [&'static str; 5] = ["hash", "min", "max", "abs", "str"];
    /// Allowed argument counts: (min, max).
    pub fn arity(self) -> (usize, usize) {
        match self {
            Function::Hash => (1, usize::MAX),
            Function::Min | Function::Max => (2, 2),
            Function::Abs | Function::Str => (1, 1),
        }
    }
    pub fn result_type(self) -> Type {
        match self {
            Function::Hash | Function::Min | Function::Max | Function::Abs => Type::Int,
            Function::Str => Type::String,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub range: TextRange,
}

#[derive(Clone, Debug, Serialize)]
pub enum ExprKind {
    Var(String),
    Wildcard,
    Int(i64),
    Str(String),
    Bool(bool),
    SelfAddr,
    Neg(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call(Function, Vec<Expr>),
    /// Syntax that could not be lowered (already reported).
    Error,
}

impl Expr {
    /// Every variable occurrence in this expression, with its range.
    pub fn variables<'a>(&'a self, out: &mut Vec<(&'a str, TextRange)>) {
        match &self.kind {
            ExprKind::Var(name) => out.push((name, self.range)),
            ExprKind::Neg(e) => e.variables(out),
            ExprKind::Binary(_, l, r) => {
                l.variables(out);
                r.variables(out);
            }
            ExprKind::Call(_, args) => args.iter().for_each(|a| a.variables(out)),
            _ => {}
        }
    }
    pub fn as_var(&self) -> Option<&str> {
        match &self.kind {
            ExprKind::Var(name) => Some(name),
            _ => None,
        }
    }
    pub fn is_constant(&self) -> bool {
        match &self.kind {
            ExprKind::Int(_) | ExprKind::Str(_) | ExprKind::Bool(_) => true,
            ExprKind::Neg(e) => e.is_constant(),
            ExprKind::Binary(_, l, r) => l.is_constant() && r.is_constant(),
            ExprKind::Call(_, args) => args.iter().all(Expr::is_constant),
            _ => false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Invariant {
    pub name: String,
    pub name_range: TextRange,
    /// None for a top-level invariant, checked over the union of every node's facts.
    pub component: Option<ComponentId>,
    pub args: Vec<Expr>,
    pub body: Vec<BodyItem>,
    pub range: TextRange,
    pub variables: Vec<Variable>,
}

/// A whole program: every component, relation, rule and invariant of one file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Program {
    pub components: Vec<Component>,
    pub relations: Vec<Relation>,
    pub rules: Vec<Rule>,
    pub invariants: Vec<Invariant>,
    #[serde(skip)]
    pub relation_index: FxHashMap<String, RelationId>,
    #[serde(skip)]
    pub component_index: FxHashMap<String, ComponentId>,
    /// Rules by head relation, indexed by `RelationId` (filled by lowering with the relation ids).
    #[serde(skip)]
    pub derivers: Vec<Vec<RuleId>>,
    /// The first syntax error outside every component (a broken top-level item), which may hide
    /// an invariant or a whole component.
    #[serde(skip)]
    pub stray_syntax_error: Option<TextRange>,
}

impl Program {
    pub fn component(&self, id: ComponentId) -> &Component {
        &self.components[id.index()]
    }
    pub fn relation(&self, id: RelationId) -> &Relation {
        &self.relations[id.index()]
    }
    pub fn rule(&self, id: RuleId) -> &Rule {
        &self.rules[id.index()]
    }
    pub fn invariant(&self, id: InvariantId) -> &Invariant {
        &self.invariants[id.index()]
    }
    pub fn relation_by_name(&self, name: &str) -> Option<RelationId> {
        self.relation_index.get(name).copied()
    }
    pub fn component_by_name(&self, name: &str) -> Option<ComponentId> {
        self.component_index.get(name).copied()
    }
    pub fn rule_ids(&self) -> impl Iterator<Item = RuleId> {
        (0..self.rules.len() as u32).map(RuleId)
    }
    /// A rule's number within its component, from 1, facts included: the one numbering of rules
    /// (`compart rewrite --decouple COMPONENT:N`, run reports' `COMPONENT rule N (line L)`).
    pub fn rule_number(&self, rule: RuleId) -> usize {
        let rules = &self.component(self.rule(rule).component).rules;
        rules.iter().position(|&r| r == rule).map_or(0, |i| i + 1)
    }
    /// The rule numbered `number` in `component` (see [`Program::rule_number`]).
    pub fn rule_by_number(&self, component: ComponentId, number: usize) -> Option<RuleId> {
        number.checked_sub(1).and_then(|i| self.component(component).rules.get(i)).copied()
    }
    pub fn relation_ids(&self) -> impl Iterator<Item = RelationId> {
        (0..self.relations.len() as u32).map(RelationId)
    }
    pub fn component_ids(&self) -> impl Iterator<Item = ComponentId> {
        (0..self.components.len() as u32).map(ComponentId)
    }
    /// Rules whose head is `relation`.
    pub fn rules_deriving(&self, relation: RelationId) -> impl Iterator<Item = RuleId> + '_ {
        self.derivers.get(relation.index()).into_iter().flatten().copied()
    }

    /// The component whose nodes each send to their own partner node of `component` (a rule of
    /// it sends `r@d(..)` with `partner(self, d), nodes("<component>", d)` in its body): the
    /// component `component` was decoupled from, which it must match node for node.
    pub fn partnered_with(&self, component: ComponentId) -> Option<ComponentId> {
        let name = &self.component(component).name;
        self.rules.iter().find_map(|rule| {
            let (to, partner_of) = rule.addressee()?;
            let from_self = partner_of.is_some_and(|e| matches!(e.kind, ExprKind::SelfAddr));
            (to == name && from_self && rule.component != component).then_some(rule.component)
        })
    }

    /// The column of `rel` that routes its facts among the instances of its partitioned component
    /// (`partitioned by p2a.slot` names it; a bare `slot` applies to every relation with that
    /// column); None when the component is not partitioned or `rel` has no such column: then a
    /// fact sent to a logical node reaches every instance of it.
    pub fn partition_column(&self, rel: RelationId) -> Option<usize> {
        let relation = self.relation(rel);
        let placement = self.component(relation.component?).placement.as_ref()?;
        let explicit = placement.keys.iter().find(|k| k.relation.as_ref().is_some_and(|(n, _)| *n == relation.name));
        match explicit {
            Some(k) => relation.column_index(&k.column),
            None => {
                placement.keys.iter().filter(|k| k.relation.is_none()).find_map(|k| relation.column_index(&k.column))
            }
        }
    }

    /// How many logical nodes `component` needs given the counts of the others: its partner's
    /// (see [`Program::partnered_with`]) when it has one and no count of its own.
    pub fn logical_count(&self, component: ComponentId, given: impl Fn(&str) -> Option<usize>) -> usize {
        let mut at = component;
        for _ in 0..self.components.len() {
            if let Some(n) = given(&self.component(at).name) {
                return n.max(1);
            }
            match self.partnered_with(at) {
                Some(p) => at = p,
                None => break,
            }
        }
        1
    }
}
