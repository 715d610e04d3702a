//! Concrete syntax tree to program model. Tolerant: whatever parsed is lowered, whatever did not
//! is skipped (its syntax error is reported elsewhere), so the model is always usable.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use tree_sitter::Node;

use crate::diagnostics::{closest, Code, Diagnostic};
use crate::model::*;
use crate::syntax::{first_syntax_error, range_of, SyntaxTree};
use crate::text::TextRange;

pub fn lower(syntax: &SyntaxTree, diagnostics: &mut Vec<Diagnostic>) -> Program {
    lower_cached(syntax, diagnostics, &mut LowerCache::default())
}

/// Lowered components from previous runs, keyed by their text, so that an editor re-lowers only
/// the components an edit touched. Relation names are global, so everything that relates
/// components (duplicates, name resolution, scratch relations) is redone on every run.
#[derive(Default)]
pub struct LowerCache {
    entries: FxHashMap<u64, CachedComponent>,
    generation: u64,
}

struct CachedComponent {
    text: String,
    part: Arc<LoweredComponent>,
    generation: u64,
}

/// One component lowered on its own: a program holding just that component, and the diagnostics
/// lowering it produced. Ranges are absolute for `origin`, the component's start offset.
struct LoweredComponent {
    origin: u32,
    program: Program,
    diagnostics: Vec<Diagnostic>,
}

pub fn lower_cached(syntax: &SyntaxTree, diagnostics: &mut Vec<Diagnostic>, cache: &mut LowerCache) -> Program {
    cache.generation += 1;
    let mut program = Program::default();
    let mut lowerer = Lowerer {
        syntax,
        program: Program::default(),
        diagnostics,
        in_head_arg: false,
        expr_depth: 0,
        reported_depth: false,
    };
    lowerer.builtin_relations();
    std::mem::swap(&mut program, &mut lowerer.program);
    let items: Vec<Node> = named_children(syntax.root()).collect();
    for item in items.iter().filter(|i| i.kind() == "component") {
        let text = syntax.node_text(*item);
        let key = {
            let mut hasher = rustc_hash::FxHasher::default();
            text.hash(&mut hasher);
            hasher.finish()
        };
        let origin = item.start_byte() as u32;
        let part = match cache.entries.get_mut(&key) {
            Some(entry) if entry.text == text => {
                entry.generation = cache.generation;
                entry.part.clone()
            }
            _ => {
                let part = Arc::new(lower_component(syntax, *item));
                let entry =
                    CachedComponent { text: text.to_string(), part: part.clone(), generation: cache.generation };
                cache.entries.insert(key, entry);
                part
            }
        };
        merge_component(&mut program, &part, origin, lowerer.diagnostics);
    }
    let generation = cache.generation;
    cache.entries.retain(|_, e| e.generation == generation);
    // Top-level items that are not components, and components without a name (not lowered).
    program.stray_syntax_error = items
        .iter()
        .filter(|i| i.kind() != "component" || i.child_by_field_name("name").is_none())
        .find_map(|i| first_syntax_error(*i));
    lowerer.program = program;
    for item in items.iter().filter(|i| i.kind() == "invariant") {
        lowerer.lower_invariant(*item, None);
    }
    lowerer.resolve();
    lowerer.program
}

fn lower_component(syntax: &SyntaxTree, node: Node<'_>) -> LoweredComponent {
    let mut diagnostics = Vec::new();
    let mut lowerer = Lowerer {
        syntax,
        program: Program::default(),
        diagnostics: &mut diagnostics,
        in_head_arg: false,
        expr_depth: 0,
        reported_depth: false,
    };
    if let Some(id) = lowerer.declare_component(node) {
        lowerer.lower_component_items(id, node);
    }
    let program = lowerer.program;
    LoweredComponent { origin: node.start_byte() as u32, program, diagnostics }
}

/// Add a separately lowered component to the program, moved to `origin`, reporting what clashes
/// with the components before it.
fn merge_component(program: &mut Program, part: &LoweredComponent, origin: u32, diagnostics: &mut Vec<Diagnostic>) {
    let delta = i64::from(origin) - i64::from(part.origin);
    let Some(component) = part.program.components.first() else {
        // The component had no name: nothing to merge, but keep what lowering reported.
        diagnostics.extend(part.diagnostics.iter().cloned().map(|d| shifted_diagnostic(d, delta)));
        return;
    };
    let mut component = component.clone();
    shift_component(&mut component, delta);
    diagnostics.extend(part.diagnostics.iter().cloned().map(|d| shifted_diagnostic(d, delta)));
    if let Some(previous) = program.component_by_name(&component.name) {
        let first = program.component(previous).name_range;
        diagnostics.push(
            Diagnostic::new(
                Code::DuplicateComponent,
                component.name_range,
                format!("component `{}` is defined twice", component.name),
            )
            .with_related(first, "first defined here"),
        );
        return;
    }
    let id = ComponentId(program.components.len() as u32);
    program.component_index.insert(component.name.clone(), id);
    component.relations.clear();
    component.rules.clear();
    component.invariants.clear();
    program.components.push(component);
    for relation in &part.program.relations {
        let mut relation = relation.clone();
        shift_relation(&mut relation, delta);
        if let Some(previous) = program.relation_by_name(&relation.name) {
            let first = program.relation(previous).name_range;
            diagnostics.push(
                Diagnostic::new(
                    Code::DuplicateRelation,
                    relation.name_range,
                    format!("relation `{}` is declared twice; relation names are global to the program", relation.name),
                )
                .with_related(first, "first declared here"),
            );
            continue;
        }
        relation.component = Some(id);
        let relation_id = RelationId(program.relations.len() as u32);
        program.relation_index.insert(relation.name.clone(), relation_id);
        program.components[id.index()].relations.push(relation_id);
        program.relations.push(relation);
    }
    for rule in &part.program.rules {
        let mut rule = rule.clone();
        rule.component = id;
        shift_rule(&mut rule, delta);
        program.components[id.index()].rules.push(RuleId(program.rules.len() as u32));
        program.rules.push(rule);
    }
    for invariant in &part.program.invariants {
        let mut invariant = invariant.clone();
        invariant.component = Some(id);
        shift_invariant(&mut invariant, delta);
        program.components[id.index()].invariants.push(InvariantId(program.invariants.len() as u32));
        program.invariants.push(invariant);
    }
}

fn shift(range: &mut TextRange, delta: i64) {
    if delta != 0 {
        range.start = (i64::from(range.start) + delta) as u32;
        range.end = (i64::from(range.end) + delta) as u32;
    }
}

fn shifted_diagnostic(mut d: Diagnostic, delta: i64) -> Diagnostic {
    shift(&mut d.range, delta);
    d.related.iter_mut().for_each(|r| shift(&mut r.range, delta));
    if let Some(fix) = &mut d.fix {
        fix.edits.iter_mut().for_each(|e| shift(&mut e.range, delta));
    }
    d
}

fn shift_component(c: &mut Component, delta: i64) {
    shift(&mut c.name_range, delta);
    shift(&mut c.range, delta);
    if let Some(range) = &mut c.syntax_error {
        shift(range, delta);
    }
    if let Some(placement) = &mut c.placement {
        shift(&mut placement.range, delta);
        for key in &mut placement.keys {
            shift(&mut key.range, delta);
            shift(&mut key.column_range, delta);
            if let Some((_, range)) = &mut key.relation {
                shift(range, delta);
            }
        }
    }
}

fn shift_relation(r: &mut Relation, delta: i64) {
    shift(&mut r.name_range, delta);
    shift(&mut r.range, delta);
    for column in &mut r.columns {
        shift(&mut column.name_range, delta);
        if let Some(range) = &mut column.ty_range {
            shift(range, delta);
        }
    }
}

fn shift_rule(rule: &mut Rule, delta: i64) {
    if delta == 0 {
        return;
    }
    shift(&mut rule.range, delta);
    shift(&mut rule.op_range, delta);
    let head = &mut rule.head;
    shift(&mut head.range, delta);
    shift(&mut head.relation_range, delta);
    if let Some(dest) = &mut head.destination {
        shift_expr(dest, delta);
    }
    for arg in &mut head.args {
        match arg {
            HeadArg::Expr(e) => shift_expr(e, delta),
            HeadArg::Aggregate(a) => {
                shift(&mut a.range, delta);
                shift_expr(&mut a.arg, delta);
            }
        }
    }
    shift_body(&mut rule.body, delta);
}

fn shift_invariant(invariant: &mut Invariant, delta: i64) {
    shift(&mut invariant.range, delta);
    shift(&mut invariant.name_range, delta);
    invariant.args.iter_mut().for_each(|a| shift_expr(a, delta));
    shift_body(&mut invariant.body, delta);
}

fn shift_body(body: &mut [BodyItem], delta: i64) {
    for item in body {
        match item {
            BodyItem::Atom(atom) => {
                shift(&mut atom.range, delta);
                shift(&mut atom.relation_range, delta);
                atom.args.iter_mut().for_each(|a| shift_expr(a, delta));
            }
            BodyItem::Condition(c) => {
                shift(&mut c.range, delta);
                shift_expr(&mut c.left, delta);
                shift_expr(&mut c.right, delta);
            }
        }
    }
}

fn shift_expr(expr: &mut Expr, delta: i64) {
    shift(&mut expr.range, delta);
    match &mut expr.kind {
        ExprKind::Neg(e) => shift_expr(e, delta),
        ExprKind::Binary(_, l, r) => {
            shift_expr(l, delta);
            shift_expr(r, delta);
        }
        ExprKind::Call(_, args) => args.iter_mut().for_each(|a| shift_expr(a, delta)),
        _ => {}
    }
}

struct Lowerer<'a> {
    syntax: &'a SyntaxTree,
    program: Program,
    diagnostics: &'a mut Vec<Diagnostic>,
    /// Lowering an expression inside a head argument (aggregates there are misplaced, not misnamed).
    in_head_arg: bool,
    expr_depth: usize,
    reported_depth: bool,
}

/// Every later pass recurses over expressions; this bound keeps them far from the stack's limit.
pub const MAX_EXPR_DEPTH: usize = 128;

fn named_children(node: Node<'_>) -> impl Iterator<Item = Node<'_>> {
    {
        let mut cursor = node.walk();
        node.named_children(&mut cursor).filter(|n| !n.is_extra()).collect::<Vec<_>>().into_iter()
    }
}

fn fields<'t>(node: Node<'t>, field: &'static str) -> Vec<Node<'t>> {
    let mut cursor = node.walk();
    node.children_by_field_name(field, &mut cursor).filter(|n| !n.is_missing()).collect()
}

impl<'a> Lowerer<'a> {
    fn text(&self, node: Node<'_>) -> &'a str {
        &self.syntax.text[node.byte_range()]
    }

    fn field_text(&self, node: Node<'_>, field: &str) -> Option<(&'a str, TextRange)> {
        let child = node.child_by_field_name(field)?;
        if child.is_missing() || child.is_error() || child.byte_range().is_empty() {
            return None;
        }
        Some((self.text(child), range_of(child)))
    }

    fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn builtin_relations(&mut self) {
        let column =
            |name: &str, ty| Column { name: name.into(), name_range: TextRange::default(), ty, ty_range: None };
        let builtins = [
            (NODES_RELATION, vec![column("component", Type::String), column("address", Type::Addr)], None),
            (INSTANCE_RELATION, vec![column("index", Type::Int), column("count", Type::Int)], Some(Vec::new())),
            (PARTNER_RELATION, vec![column("node", Type::Addr), column("partner", Type::Addr)], None),
        ];
        for (name, columns, key) in builtins {
            self.add_relation(Relation {
                name: name.into(),
                kind: RelationKind::Builtin,
                component: None,
                columns,
                key,
                name_range: TextRange::default(),
                range: TextRange::default(),
                declared: true,
            });
        }
    }

    fn add_relation(&mut self, relation: Relation) -> RelationId {
        let id = RelationId(self.program.relations.len() as u32);
        self.program.relation_index.insert(relation.name.clone(), id);
        if let Some(component) = relation.component {
            self.program.components[component.index()].relations.push(id);
        }
        self.program.relations.push(relation);
        id
    }

    fn declare_component(&mut self, node: Node<'_>) -> Option<ComponentId> {
        // Components are lowered one per program (see `lower_component`); `merge_component` reports duplicates.
        let (name, name_range) = self.field_text(node, "name")?;
        let id = ComponentId(self.program.components.len() as u32);
        self.program.component_index.insert(name.to_string(), id);
        self.program.components.push(Component {
            name: name.to_string(),
            name_range,
            range: range_of(node),
            placement: None,
            relations: Vec::new(),
            rules: Vec::new(),
            invariants: Vec::new(),
            strata: Vec::new(),
            syntax_error: first_syntax_error(node),
        });
        if let Some(body) = node.child_by_field_name("body") {
            for item in named_children(body) {
                if item.kind() == "relation_decl" {
                    self.declare_relation(id, item);
                }
            }
        }
        if let Some(placement) = node.child_by_field_name("placement") {
            let keys = named_children(placement)
                .filter(|n| n.kind() == "partition_key")
                .filter_map(|key| {
                    let (column, column_range) = self.field_text(key, "column")?;
                    Some(PartitionKey {
                        relation: self.field_text(key, "relation").map(|(n, r)| (n.to_string(), r)),
                        column: column.to_string(),
                        column_range,
                        range: range_of(key),
                    })
                })
                .collect();
            self.program.components[id.index()].placement = Some(Placement { keys, range: range_of(placement) });
        }
        Some(id)
    }

    fn declare_relation(&mut self, component: ComponentId, node: Node<'_>) {
        let Some((name, name_range)) = self.field_text(node, "name") else { return };
        let Some(kind) = node.child_by_field_name("kind").and_then(|k| RelationKind::from_keyword(self.text(k))) else {
            return;
        };
        if BUILTIN_RELATIONS.contains(&name) {
            self.report(Diagnostic::new(
                Code::ReservedName,
                name_range,
                format!("`{name}` is a built-in deployment relation and cannot be declared"),
            ));
            return;
        }
        if let Some(previous) = self.program.relation_by_name(name) {
            let first = self.program.relation(previous).name_range;
            self.report(
                Diagnostic::new(
                    Code::DuplicateRelation,
                    name_range,
                    format!("relation `{name}` is declared twice; relation names are global to the program"),
                )
                .with_related(first, "first declared here"),
            );
            return;
        }
        let mut columns: Vec<Column> = Vec::new();
        for column in fields(node, "column") {
            let Some((col_name, col_range)) = self.field_text(column, "name") else { continue };
            let ty_node = column.child_by_field_name("type").filter(|t| !t.is_missing() && !t.byte_range().is_empty());
            let (ty, ty_range) = match ty_node {
                Some(t) => {
                    let written = self.text(t);
                    let ty = Type::from_name(written).unwrap_or_else(|| {
                        let mut d = Diagnostic::new(
                            Code::UnknownType,
                            range_of(t),
                            format!("unknown type `{written}`; the types are int, string, bool and addr"),
                        );
                        if let Some(best) = closest(written, Type::NAMES) {
                            d = d.with_fix(format!("Change to `{best}`"), range_of(t), best);
                        }
                        self.report(d);
                        Type::Unknown
                    });
                    (ty, Some(range_of(t)))
                }
                None => (Type::Unknown, None),
            };
            if let Some(first) = columns.iter().find(|c| c.name == col_name) {
                let first = first.name_range;
                self.report(
                    Diagnostic::new(
                        Code::DuplicateColumn,
                        col_range,
                        format!("column `{col_name}` appears twice in `{name}`"),
                    )
                    .with_related(first, "first column with this name"),
                );
            }
            columns.push(Column { name: col_name.to_string(), name_range: col_range, ty, ty_range });
        }
        let key = node.child_by_field_name("key").map(|clause| {
            let mut key = Vec::new();
            for ident in named_children(clause).filter(|n| n.kind() == "identifier") {
                let col = self.text(ident);
                match columns.iter().position(|c| c.name == col) {
                    Some(i) if key.contains(&i) => self.report(Diagnostic::new(
                        Code::DuplicateKeyColumn,
                        range_of(ident),
                        format!("column `{col}` appears twice in the key"),
                    )),
                    Some(i) => key.push(i),
                    None => {
                        let mut d = Diagnostic::new(
                            Code::UnknownKeyColumn,
                            range_of(ident),
                            format!("`{name}` has no column `{col}`"),
                        );
                        if let Some(best) = closest(col, columns.iter().map(|c| c.name.as_str())) {
                            d = d.with_fix(format!("Change to `{best}`"), range_of(ident), best);
                        }
                        self.report(d);
                    }
                }
            }
            key
        });
        self.add_relation(Relation {
            name: name.to_string(),
            kind,
            component: Some(component),
            columns,
            key,
            name_range,
            range: range_of(node),
            declared: true,
        });
    }

    fn lower_component_items(&mut self, component: ComponentId, node: Node<'_>) {
        let Some(body) = node.child_by_field_name("body") else { return };
        for item in named_children(body) {
            match item.kind() {
                "rule" => self.lower_rule(component, item),
                "invariant" => self.lower_invariant(item, Some(component)),
                _ => {}
            }
        }
    }

    fn lower_rule(&mut self, component: ComponentId, node: Node<'_>) {
        let Some(head_node) = node.child_by_field_name("head") else { return };
        let Some(head) = self.lower_head(head_node) else { return };
        let op = node.child_by_field_name("op").map(|op| (self.text(op), range_of(op)));
        let deleting = node.child_by_field_name("delete").is_some();
        let (kind, op_range) = match op {
            None => (RuleKind::Fact, TextRange::empty(node.end_byte().saturating_sub(1))),
            Some((_, range)) if deleting => (RuleKind::Delete, range),
            Some((":+", range)) => (RuleKind::NextTick, range),
            Some((":~", range)) => (RuleKind::Async, range),
            Some((_, range)) => (RuleKind::SameTick, range),
        };
        if deleting {
            if let Some((token @ (":+" | ":~"), range)) = op {
                self.report(
                    Diagnostic::new(
                        Code::DeleteWithWrongOperator,
                        range,
                        format!("`delete` rules take effect at the next tick already; use `:-`, not `{token}`"),
                    )
                    .with_fix("Use `:-`", range, ":-"),
                );
            }
            if op.is_none() {
                self.report(Diagnostic::new(
                    Code::DeleteWithWrongOperator,
                    range_of(node),
                    "a `delete` needs a body: `delete rel(x) :- ...`",
                ));
            }
        }
        let body = node.child_by_field_name("body").map(|b| self.lower_body(b)).unwrap_or_default();
        let id = RuleId(self.program.rules.len() as u32);
        self.program.rules.push(Rule {
            component,
            kind,
            head,
            body,
            range: range_of(node),
            op_range,
            variables: Vec::new(),
        });
        self.program.components[component.index()].rules.push(id);
    }

    fn lower_head(&mut self, node: Node<'_>) -> Option<Head> {
        let (relation, relation_range) = self.field_text(node, "relation")?;
        let destination = node.child_by_field_name("destination").map(|d| {
            let inner = d.named_child(0).unwrap_or(d);
            self.lower_expr(inner)
        });
        let args = fields(node, "argument").into_iter().map(|arg| self.lower_head_arg(arg)).collect();
        Some(Head {
            relation: relation.to_string(),
            relation_range,
            relation_id: None,
            destination,
            args,
            range: range_of(node),
        })
    }

    fn lower_head_arg(&mut self, node: Node<'_>) -> HeadArg {
        if node.kind() == "call" {
            if let Some((name, _)) = self.field_text(node, "function") {
                if let Some(func) = AggregateFunc::from_name(name) {
                    let args = fields(node, "argument");
                    // min/max with two arguments are the scalar functions.
                    if args.len() == 1 || !matches!(func, AggregateFunc::Min | AggregateFunc::Max) {
                        let arg = match args.first() {
                            Some(a) => {
                                self.in_head_arg = true;
                                let arg = self.lower_expr(*a);
                                self.in_head_arg = false;
                                arg
                            }
                            None if func == AggregateFunc::Count => {
                                Expr { kind: ExprKind::Wildcard, range: TextRange::empty(node.end_byte() - 1) }
                            }
                            None => {
                                self.report(Diagnostic::new(
                                    Code::FunctionArity,
                                    range_of(node),
                                    format!("aggregate `{name}` takes one argument"),
                                ));
                                Expr { kind: ExprKind::Error, range: range_of(node) }
                            }
                        };
                        if args.len() > 1 {
                            self.report(Diagnostic::new(
                                Code::FunctionArity,
                                range_of(node),
                                format!("aggregate `{name}` takes one argument, not {}", args.len()),
                            ));
                        }
                        return HeadArg::Aggregate(Aggregate { func, arg, range: range_of(node) });
                    }
                }
            }
        }
        self.in_head_arg = true;
        let expr = self.lower_expr(node);
        self.in_head_arg = false;
        HeadArg::Expr(expr)
    }

    fn lower_body(&mut self, node: Node<'_>) -> Vec<BodyItem> {
        named_children(node)
            .filter_map(|item| match item.kind() {
                "atom" => self.lower_atom(item, false).map(BodyItem::Atom),
                "negation" => {
                    let atom = item.child_by_field_name("atom")?;
                    self.lower_atom(atom, true).map(|mut a| {
                        a.range = range_of(item);
                        BodyItem::Atom(a)
                    })
                }
                "condition" => {
                    let left = self.lower_expr(item.child_by_field_name("left")?);
                    let op = CompareOp::from_token(self.text(item.child_by_field_name("operator")?))?;
                    let right = item
                        .child_by_field_name("right")
                        .map(|r| self.lower_expr(r))
                        .unwrap_or(Expr { kind: ExprKind::Error, range: TextRange::empty(item.end_byte()) });
                    Some(BodyItem::Condition(Condition { left, op, right, range: range_of(item) }))
                }
                _ => None,
            })
            .collect()
    }

    fn lower_atom(&mut self, node: Node<'_>, negated: bool) -> Option<Atom> {
        let (relation, relation_range) = self.field_text(node, "relation")?;
        let args = fields(node, "argument").into_iter().map(|a| self.lower_expr(a)).collect();
        Some(Atom {
            negated,
            relation: relation.to_string(),
            relation_range,
            relation_id: None,
            args,
            range: range_of(node),
        })
    }

    fn lower_invariant(&mut self, node: Node<'_>, component: Option<ComponentId>) {
        let Some((name, name_range)) = self.field_text(node, "name") else { return };
        let args = fields(node, "argument").into_iter().map(|a| self.lower_expr(a)).collect();
        let body = node.child_by_field_name("body").map(|b| self.lower_body(b)).unwrap_or_default();
        let id = InvariantId(self.program.invariants.len() as u32);
        self.program.invariants.push(Invariant {
            name: name.to_string(),
            name_range,
            component,
            args,
            body,
            range: range_of(node),
            variables: Vec::new(),
        });
        if let Some(component) = component {
            self.program.components[component.index()].invariants.push(id);
        }
    }

    fn lower_expr(&mut self, node: Node<'_>) -> Expr {
        let range = range_of(node);
        let error = Expr { kind: ExprKind::Error, range };
        if node.is_missing() || node.is_error() {
            return error;
        }
        if self.expr_depth >= MAX_EXPR_DEPTH {
            if !self.reported_depth {
                self.reported_depth = true;
                self.report(Diagnostic::new(
                    Code::NestedTooDeeply,
                    range,
                    format!(
                        "expression nested more than {MAX_EXPR_DEPTH} levels deep; split it with `x = ...` bindings"
                    ),
                ));
            }
            return error;
        }
        self.expr_depth += 1;
        let expr = self.lower_expr_inner(node, range, error);
        self.expr_depth -= 1;
        expr
    }

    fn lower_expr_inner(&mut self, node: Node<'_>, range: TextRange, error: Expr) -> Expr {
        let kind = match node.kind() {
            "identifier" => ExprKind::Var(self.text(node).to_string()),
            "wildcard" => ExprKind::Wildcard,
            "self" => ExprKind::SelfAddr,
            "boolean" => ExprKind::Bool(self.text(node) == "true"),
            "integer" => match self.text(node).parse::<i64>() {
                Ok(value) => ExprKind::Int(value),
                Err(_) => {
                    self.report(Diagnostic::new(
                        Code::IntegerOverflow,
                        range,
                        format!("integer `{}` does not fit in 64 bits", self.text(node)),
                    ));
                    ExprKind::Error
                }
            },
            "string" => ExprKind::Str(unescape(self.text(node))),
            "parenthesized_expression" => return node.named_child(0).map(|e| self.lower_expr(e)).unwrap_or(error),
            "unary_expression" => {
                let Some(operand) = node.child_by_field_name("operand") else { return error };
                ExprKind::Neg(Box::new(self.lower_expr(operand)))
            }
            "binary_expression" => {
                let (Some(l), Some(op), Some(r)) = (
                    node.child_by_field_name("left"),
                    node.child_by_field_name("operator"),
                    node.child_by_field_name("right"),
                ) else {
                    return error;
                };
                let Some(op) = BinaryOp::from_token(self.text(op)) else { return error };
                ExprKind::Binary(op, Box::new(self.lower_expr(l)), Box::new(self.lower_expr(r)))
            }
            "call" => {
                let Some((name, name_range)) = self.field_text(node, "function") else { return error };
                let args: Vec<Expr> = fields(node, "argument").into_iter().map(|a| self.lower_expr(a)).collect();
                let scalar = Function::from_name(name)
                    .filter(|f| args.len() != 1 || !matches!(f, Function::Min | Function::Max));
                let Some(function) = scalar else {
                    let diagnostic = if AggregateFunc::from_name(name).is_some() && self.in_head_arg {
                        Diagnostic::new(
                            Code::MisplacedAggregate,
                            range,
                            format!("aggregate `{name}` must be a whole head argument, not nested in an expression or another aggregate"),
                        )
                    } else if AggregateFunc::from_name(name).is_some() {
                        Diagnostic::new(
                            Code::AggregateOutsideHead,
                            range,
                            format!("aggregate `{name}` may only appear as a head argument, where it groups by the other columns"),
                        )
                    } else {
                        let mut d =
                            Diagnostic::new(Code::UnknownFunction, name_range, format!("unknown function `{name}`"));
                        if let Some(best) = closest(name, Function::NAMES) {
                            d = d.with_fix(format!("Change to `{best}`"), name_range, best);
                        }
                        d
                    };
                    self.report(diagnostic);
                    return error;
                };
                let (min, max) = function.arity();
                if args.len() < min || args.len() > max {
                    let expected = if min == max { format!("{min}") } else { format!("at least {min}") };
                    self.report(Diagnostic::new(
                        Code::FunctionArity,
                        range,
                        format!(
                            "`{name}` takes {expected} argument{}, not {}",
                            if max == 1 { "" } else { "s" },
                            args.len()
                        ),
                    ));
                    return error;
                }
                ExprKind::Call(function, args)
            }
            _ => ExprKind::Error,
        };
        Expr { kind, range }
    }

    /// Link heads and atoms to relations; create the undeclared (scratch) relations rules derive.
    fn resolve(&mut self) {
        for index in 0..self.program.rules.len() {
            let rule = &self.program.rules[index];
            let name = rule.head.relation.clone();
            let id = match self.program.relation_by_name(&name) {
                Some(id) => Some(id),
                // Facts and derivations create undeclared scratch relations; sends and deletes need a declaration.
                None if matches!(rule.kind, RuleKind::SameTick | RuleKind::NextTick | RuleKind::Fact) => {
                    let columns = rule
                        .head
                        .args
                        .iter()
                        .enumerate()
                        .map(|(i, arg)| Column {
                            name: match arg {
                                HeadArg::Expr(e) => e.as_var().map(str::to_string),
                                HeadArg::Aggregate(a) => Some(a.func.name().to_string()),
                            }
                            .unwrap_or_else(|| format!("c{i}")),
                            name_range: arg.range(),
                            ty: Type::Unknown,
                            ty_range: None,
                        })
                        .collect();
                    let (component, name_range, range) = (rule.component, rule.head.relation_range, rule.head.range);
                    Some(self.add_relation(Relation {
                        name,
                        kind: RelationKind::Scratch,
                        component: Some(component),
                        columns,
                        key: None,
                        name_range,
                        range,
                        declared: false,
                    }))
                }
                None => None,
            };
            self.program.rules[index].head.relation_id = id;
        }
        let mut derivers = vec![Vec::new(); self.program.relations.len()];
        for (index, rule) in self.program.rules.iter().enumerate() {
            if let Some(head) = rule.head.relation_id {
                derivers[head.index()].push(RuleId(index as u32));
            }
        }
        self.program.derivers = derivers;
        let names: Vec<String> = self.program.relations.iter().map(|r| r.name.clone()).collect();
        let mut unknown = Vec::new();
        let index = &self.program.relation_index;
        let mut resolve_head = |head: &mut Head| {
            if head.relation_id.is_none() {
                unknown.push((head.relation.clone(), head.relation_range));
            }
        };
        for rule in &mut self.program.rules {
            resolve_head(&mut rule.head);
        }
        let mut resolve_atoms = |body: &mut Vec<BodyItem>| {
            for item in body {
                if let BodyItem::Atom(atom) = item {
                    atom.relation_id = index.get(&atom.relation).copied();
                    if atom.relation_id.is_none() {
                        unknown.push((atom.relation.clone(), atom.relation_range));
                    }
                }
            }
        };
        for rule in &mut self.program.rules {
            resolve_atoms(&mut rule.body);
        }
        for invariant in &mut self.program.invariants {
            resolve_atoms(&mut invariant.body);
        }
        for (name, range) in unknown {
            let mut d = Diagnostic::new(Code::UnknownRelation, range, format!("unknown relation `{name}`"));
            if let Some(best) = closest(&name, names.iter().map(String::as_str)) {
                d = d.with_fix(format!("Change to `{best}`"), range, best);
            }
            self.report(d);
        }
    }
}

fn unescape(literal: &str) -> String {
    let inner = literal.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(literal);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}
