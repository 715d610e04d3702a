//! The scaling analysis in the editor: each component's and rule's class as inlay hints and in
//! hovers, and the rewrites (decouple, partition, batch, grid, thrifty broadcast, shared proxies) as code actions
//! that edit the program into the rewritten one (only the regions that differ) and update its
//! deployment file, or show why they do not apply (a disabled action with the reason).

use compart_analysis::deployment;
use compart_analysis::model::{ComponentId, RuleId, RuleKind};
use compart_analysis::rewrite::{self, Refusal, RewriteResult};
use compart_analysis::scaling::{self, ComponentScaling, Context, RuleScaling, ScalingReport, Verdict};
use compart_analysis::{Analysis, Code, Program, Severity, TextRange};
use tower_lsp_server::ls_types::{
    CodeAction, CodeActionDisabled, CodeActionKind, CodeActionOrCommand, Command, InlayHint, InlayHintLabel,
    InlayHintTooltip, MarkupContent, MarkupKind, WorkspaceEdit,
};

use crate::converters::Converter;
use crate::documents::Snapshot;
use crate::handlers::edits::{self, Beside, DeploymentEdit};
use crate::session::Config;
use crate::stale::{self, ScalingHint};

/// `parallel`, `partitioned by id`, `sequential`.
fn label(program: &Program, verdict: &Verdict) -> String {
    verdict.class.label(program)
}

/// The verdict in Markdown: the summary, then every reason.
pub fn explain(program: &Program, verdict: &Verdict) -> String {
    let mut text = format!("**Scaling: {}** — {}", label(program, verdict), verdict.summary);
    for reason in &verdict.reasons {
        text.push_str(&format!("\n- {}", reason.render(program)));
    }
    text
}

pub fn component_note(snapshot: &Snapshot, id: ComponentId) -> String {
    explain(&snapshot.analysis.program, &snapshot.scaling().component(id).verdict)
}

pub fn relation_note(snapshot: &Snapshot, name: &str) -> Option<String> {
    let report: &ScalingReport = snapshot.scaling();
    let rel = report.relations.iter().find(|r| r.name == name)?;
    let reason = rel.nonmonotone.as_ref()?;
    Some(format!("Not monotone: {}", reason.render(&snapshot.analysis.program)))
}

fn hint(conv: &Converter<'_>, at: u32, text: String, tooltip: String) -> InlayHint {
    InlayHint {
        position: conv.position(at as usize),
        label: InlayHintLabel::String(text),
        kind: None,
        text_edits: None,
        tooltip: Some(InlayHintTooltip::MarkupContent(MarkupContent { kind: MarkupKind::Markdown, value: tooltip })),
        padding_left: Some(true),
        padding_right: Some(false),
        data: None,
    }
}

/// One hint after each component's name (and placement), one after each rule. A component with
/// errors has no meaningful classes now: its hints are those of its last version without errors,
/// where they still stand on the same text (stale.rs), marked as such in the tooltip.
pub fn inlay_hints(snapshot: &Snapshot, within: TextRange) -> Vec<InlayHint> {
    let analysis = &snapshot.analysis;
    let program = &analysis.program;
    let conv = Converter::new(analysis);
    let inside = |r: TextRange| r.start <= within.end && within.start <= r.end;
    // Hints are asked for the lines on screen after every edit: judge only the components there,
    // unless a hover or code action already classified this version whole.
    let visible: Vec<ComponentId> = program
        .component_ids()
        .filter(|&c| inside(program.component(c).range) && stale::is_clean(analysis, c))
        .collect();
    let (components, rules) = match snapshot.scaling_if_computed() {
        Some(report) => (
            report.components.iter().filter(|c| visible.contains(&c.component)).cloned().collect(),
            report.rules.iter().filter(|r| visible.contains(&r.component)).cloned().collect(),
        ),
        None => scaling::classify_components(program, &visible),
    };
    let mut hints = scaling_hints(program, &components, &rules);
    for stale in snapshot.stale.components.iter() {
        let old = stale.hints.get_or_init(|| {
            let program = &stale.analysis.program;
            let Some(id) = program.component_by_name(&stale.name) else { return Vec::new() };
            let (components, rules) = scaling::classify_components(program, &[id]);
            let mut hints = scaling_hints(program, &components, &rules);
            for hint in &mut hints {
                hint.tooltip.push_str("\n\n*As of the last version of this component without errors.*");
            }
            hints
        });
        hints.extend(old.iter().filter_map(|hint| stale.map_hint(hint, analysis.text())));
    }
    let mut out: Vec<InlayHint> =
        hints.into_iter().filter(|h| inside(h.anchor)).map(|h| hint(&conv, h.at, h.label, h.tooltip)).collect();
    out.sort_by_key(|h| (h.position.line, h.position.character));
    out
}

/// The hints of classified components and rules, in byte offsets of the program's text.
fn scaling_hints(program: &Program, components: &[ComponentScaling], rules: &[RuleScaling]) -> Vec<ScalingHint> {
    let mut out = Vec::new();
    for c in components {
        let comp = program.component(c.component);
        let end = comp.placement.as_ref().map_or(comp.name_range.end, |p| p.range.end);
        out.push(ScalingHint {
            at: end,
            anchor: TextRange { start: comp.name_range.start, end },
            label: format!("⟨{}⟩", label(program, &c.verdict)),
            tooltip: explain(program, &c.verdict),
        });
    }
    for r in rules {
        let rule = program.rule(r.rule);
        if rule.kind == RuleKind::Fact {
            continue;
        }
        out.push(ScalingHint {
            at: rule.range.end,
            anchor: rule.range,
            label: format!("⟨{}⟩", label(program, &r.verdict)),
            tooltip: explain(program, &r.verdict),
        });
    }
    out
}

/// The edit a checked rewrite makes: the program's changed regions, and the deployment file
/// beside it updated for the rewritten program (see `edits::workspace_edit`); with one line per
/// deployment change.
pub fn rewrite_edit(
    snapshot: &Snapshot,
    result: &RewriteResult,
    beside: Option<&Beside>,
    config: &Config,
) -> (WorkspaceEdit, Vec<String>) {
    let rewritten = compart_analysis::analyze(&result.new_text);
    let changes = deployment::result_changes(&snapshot.analysis.program, &rewritten.program, result);
    let program_edits = edits::program_edits(snapshot, &result.new_text);
    edits::workspace_edit(snapshot, program_edits, beside, (&rewritten.program, &changes), true, config)
}

/// A rewrite action: choosing it runs `compart.applyRewrite`, which computes the rewrite, checks it
/// against the buffer's program with the bounded refinement check, and only then applies it (or
/// shows the counterexample). A refused rewrite is a disabled action with the reason. When the
/// deployment file cannot be kept in step (none beside the program, and the client cannot create
/// one), the title says so.
fn action(
    mut title: String,
    outcome: Result<(), String>,
    mut data: serde_json::Value,
    deploy: &DeploymentTarget,
) -> CodeActionOrCommand {
    data["deployment"] = deploy.edit.as_str().into();
    let disabled = outcome.err().map(|reason| CodeActionDisabled { reason });
    if deploy.edit == DeploymentEdit::None && disabled.is_none() {
        title.push_str(&format!(" (program only: no {} to update)", deploy.file));
    }
    let command = disabled.is_none().then(|| Command {
        title: title.clone(),
        command: crate::handlers::commands::APPLY_REWRITE.to_string(),
        arguments: Some(vec![data.clone()]),
    });
    CodeActionOrCommand::CodeAction(CodeAction {
        title,
        kind: Some(CodeActionKind::REFACTOR_REWRITE),
        command,
        disabled,
        data: Some(data),
        ..Default::default()
    })
}

fn checked(outcome: Result<RewriteResult, Refusal>) -> Result<(), String> {
    outcome.map(|_| ()).map_err(|refusal| refusal.reason)
}

/// A component name that is not taken: `leader_ballot`, `leader_ballot2`, ...
fn fresh_name(program: &Program, base: &str) -> String {
    rewrite::unused_name(base, |n| program.component_by_name(n).is_some() || program.relation_by_name(n).is_some())
}

/// What the rewrite actions will do to the deployment file beside the program.
pub struct DeploymentTarget {
    pub edit: DeploymentEdit,
    /// Its name, for the title (`paxos.toml`).
    pub file: String,
    /// How its workload delivers requests, which batching keeps.
    pub delivery: rewrite::Delivery,
}

impl DeploymentTarget {
    pub fn of(beside: Option<&Beside>, config: &Config) -> Self {
        let file = beside.map_or_else(|| "deployment file".to_string(), Beside::file_name);
        let delivery = request_delivery(beside);
        DeploymentTarget { edit: DeploymentEdit::of(beside, config), file, delivery }
    }
}

/// The workload's delivery in the deployment file beside the program; a file the runtime would
/// refuse (a bad `send_to`) gets the runtime's default, as it cannot run anyway.
pub fn request_delivery(beside: Option<&Beside>) -> rewrite::Delivery {
    deployment::request_delivery(beside.and_then(|b| b.text.as_deref())).unwrap_or_default()
}

/// Programs longer than this get their rewrites' preconditions checked only when the action is
/// chosen: each rewrite re-parses, re-analyses and formats the whole program, which takes hundreds
/// of milliseconds at thousands of lines. Below it, a refused rewrite shows as a disabled action
/// with the reason as soon as actions are listed.
pub const LAZY_ABOVE_LINES: usize = 1500;

/// What `compart.applyRewrite` needs to compute the rewrite.
fn rewrite_data(
    snapshot: &Snapshot,
    rewrite: &str,
    component: &str,
    rules: &[RuleId],
    name: &str,
) -> serde_json::Value {
    serde_json::json!({
        "uri": snapshot.uri.as_str(),
        "version": snapshot.version,
        "rewrite": rewrite,
        "component": component,
        "rules": rules.iter().map(|r| r.0).collect::<Vec<_>>(),
        "name": name,
    })
}

/// The rewrite a `compart.applyRewrite` command names, computed on the same document version;
/// with whether only invariants can be compared (sealed partitioning and batching are not
/// equivalences).
pub fn rewrite_for(
    snapshot: &Snapshot,
    data: &serde_json::Value,
    delivery: rewrite::Delivery,
) -> Result<(RewriteResult, bool), String> {
    if data["version"].as_i64() != Some(snapshot.version as i64) {
        return Err("the document changed since this action was offered; ask for code actions again".into());
    }
    let component = data["component"].as_str().ok_or("missing component")?;
    let analysis = &snapshot.analysis;
    let outcome = match data["rewrite"].as_str() {
        Some("decouple") => {
            let rules: Vec<RuleId> = data["rules"]
                .as_array()
                .ok_or("missing rules")?
                .iter()
                .filter_map(|r| r.as_u64())
                .filter(|&r| (r as usize) < analysis.program.rules.len())
                .map(|r| RuleId(r as u32))
                .collect();
            rewrite::decouple(analysis, component, &rules, data["name"].as_str().unwrap_or_default())
        }
        Some("partition") => rewrite::partition(analysis, component, None),
        Some("partition_sealed") => rewrite::partition_sealed(analysis, component, None),
        Some("batch") => rewrite::batch(analysis, component, rewrite::DEFAULT_BATCH_SIZE, delivery),
        Some("grid") => rewrite::grid(analysis, component, rewrite::DEFAULT_GRID_ROWS),
        Some("thrifty") => {
            let rule = data["rules"]
                .get(0)
                .and_then(|r| r.as_u64())
                .filter(|&r| (r as usize) < analysis.program.rules.len())
                .ok_or("missing rule")?;
            rewrite::thrifty_rule(analysis, RuleId(rule as u32))
        }
        Some("share") => rewrite::share(
            analysis,
            component,
            data["with"].as_str().ok_or("missing the second component")?,
            data["name"].as_str().unwrap_or_default(),
        ),
        _ => return Err("unknown rewrite".into()),
    };
    let invariants_only = matches!(data["rewrite"].as_str(), Some("partition_sealed" | "batch" | "grid"));
    outcome.map(|result| (result, invariants_only)).map_err(|refusal| refusal.reason)
}

/// "Decouple these rules into a new component" for the rules the selection touches (or the rule
/// under the cursor), and "Partition `c` by `key`" for the component around it.
pub fn code_actions(snapshot: &Snapshot, range: TextRange, deploy: &DeploymentTarget) -> Vec<CodeActionOrCommand> {
    let lazy = snapshot.analysis.line_index.line_count() > LAZY_ABOVE_LINES;
    let analysis = &snapshot.analysis;
    let program = &analysis.program;
    let mut out = Vec::new();
    let touched: Vec<RuleId> = program
        .rule_ids()
        .filter(|&r| {
            let rule = program.rule(r);
            rule.range.start <= range.end && range.start <= rule.range.end
        })
        .collect();
    if let Some(&first) = touched.first() {
        let cid = program.rule(first).component;
        if touched.iter().all(|&r| program.rule(r).component == cid) {
            let comp = program.component(cid);
            let name = fresh_name(program, &format!("{}_{}", comp.name, program.rule(first).head.relation));
            let what = if touched.len() == 1 { "this rule" } else { "these rules" };
            let title = format!("Decouple {what} into a new component `{name}`");
            let data = rewrite_data(snapshot, "decouple", &comp.name, &touched, &name);
            let outcome = match blocked_by_errors(analysis, cid) {
                Some(reason) => Err(reason),
                None if lazy => Ok(()),
                None => checked(rewrite::decouple(analysis, &comp.name, &touched, &name)),
            };
            out.push(action(title, outcome, data, deploy));
        }
    }
    if let [rule] = touched.as_slice() {
        out.extend(thrifty_action(snapshot, *rule, lazy, deploy));
    }
    let around = program.component_ids().find(|&c| program.component(c).range.contains(range.start as usize));
    if let Some(cid) = around {
        let comp = program.component(cid);
        if let (None, Some(reason)) = (&comp.placement, blocked_by_errors(analysis, cid)) {
            let data = rewrite_data(snapshot, "partition", &comp.name, &[], "");
            out.push(action(format!("Partition `{}` by a key", comp.name), Err(reason), data, deploy));
        } else if comp.placement.is_none() && lazy {
            // The cached report says whether a policy exists; resolve runs the rewrite itself.
            let verdict = &snapshot.scaling().component(cid).verdict;
            let (title, disabled) = match &verdict.class {
                scaling::ScalingClass::PartitionedBy { policy } => {
                    (format!("Partition `{}` by `{}`", comp.name, scaling::key_label(program, policy)), None)
                }
                _ if verdict.class.is_sequential() => {
                    let why = verdict.reasons.first().map_or(verdict.summary.clone(), |r| r.render(program));
                    (
                        format!("Partition `{}` by a key", comp.name),
                        Some(format!("`{}` cannot be partitioned: {why}", comp.name)),
                    )
                }
                _ => (format!("Partition `{}` by a key", comp.name), None),
            };
            out.push(action(
                title,
                disabled.map_or(Ok(()), Err),
                rewrite_data(snapshot, "partition", &comp.name, &[], ""),
                deploy,
            ));
            if verdict.class.is_sequential() {
                let title = sealed_title(&comp.name);
                out.push(action(
                    title,
                    Ok(()),
                    rewrite_data(snapshot, "partition_sealed", &comp.name, &[], ""),
                    deploy,
                ));
                let data = rewrite_data(snapshot, "batch", &comp.name, &[], "");
                out.push(action(batch_title(&comp.name), Ok(()), data, deploy));
            }
        } else if comp.placement.is_none() {
            let policies = Context::new(program).policies(cid, &comp.rules);
            let key = policies.first().map(|p| scaling::key_label(program, p));
            let title = match &key {
                Some(k) => format!("Partition `{}` by `{k}`", comp.name),
                None => format!("Partition `{}` by a key", comp.name),
            };
            let data = rewrite_data(snapshot, "partition", &comp.name, &[], "");
            out.push(action(title, checked(rewrite::partition(analysis, &comp.name, None)), data, deploy));
            if key.is_none() {
                let outcome = checked(rewrite::partition_sealed(analysis, &comp.name, None));
                let data = rewrite_data(snapshot, "partition_sealed", &comp.name, &[], "");
                out.push(action(sealed_title(&comp.name), outcome, data, deploy));
                // Batching is for what cannot scale out: a sequential component.
                let outcome =
                    checked(rewrite::batch(analysis, &comp.name, rewrite::DEFAULT_BATCH_SIZE, deploy.delivery));
                let data = rewrite_data(snapshot, "batch", &comp.name, &[], "");
                out.push(action(batch_title(&comp.name), outcome, data, deploy));
            }
        }
        // Grid quorums, on a component whose nodes some rule counts (the quorums' candidates).
        if rewrite::nodes_counted(program, &comp.name) {
            let outcome = match blocked_by_errors(analysis, cid) {
                Some(reason) => Err(reason),
                None if lazy => Ok(()),
                None => checked(rewrite::grid(analysis, &comp.name, rewrite::DEFAULT_GRID_ROWS)),
            };
            let data = rewrite_data(snapshot, "grid", &comp.name, &[], "");
            out.push(action(grid_title(&comp.name), outcome, data, deploy));
        }
        // Shared proxies, with every other stateless component.
        for other in rewrite::share_candidates(program, cid) {
            let other = &program.component(other).name;
            let name = fresh_name(program, &format!("{}_{other}", comp.name));
            let outcome = match blocked_by_errors(analysis, cid) {
                Some(reason) => Err(reason),
                None if lazy => Ok(()),
                None => checked(rewrite::share(analysis, &comp.name, other, &name)),
            };
            let mut data = rewrite_data(snapshot, "share", &comp.name, &[], &name);
            data["with"] = other.as_str().into();
            let title = format!("Share instances of `{}` and `{other}` as one component `{name}`", comp.name);
            out.push(action(title, outcome, data, deploy));
        }
    }
    out
}

/// "Send `m` to a quorum of `C`" for a rule that broadcasts (`m@a(..) :~ .., nodes("C", a)`);
/// none for other rules, which thrifty broadcast never applies to.
fn thrifty_action(
    snapshot: &Snapshot,
    rule: RuleId,
    lazy: bool,
    deploy: &DeploymentTarget,
) -> Option<CodeActionOrCommand> {
    let analysis = &snapshot.analysis;
    let program = &analysis.program;
    let r = program.rule(rule);
    if !rewrite::broadcasts(analysis, r.component).contains(&rule) {
        return None;
    }
    let comp = &program.component(r.component).name;
    let to = r.addressee().map_or("", |(c, _)| c);
    let title = format!(
        "Send `{}` to a quorum of `{to}` (thrifty broadcast: the rest on the timer input `{}_widen()`)",
        r.head.relation, r.head.relation
    );
    let data = rewrite_data(snapshot, "thrifty", comp, &[rule], "");
    let outcome = match blocked_by_errors(analysis, r.component) {
        Some(reason) => Err(reason),
        None if lazy => Ok(()),
        None => checked(rewrite::thrifty_rule(analysis, rule)),
    };
    Some(action(title, outcome, data, deploy))
}

/// Rewrites format and re-check the whole program, so none applies while the buffer has errors,
/// and none is computed from a component's last clean version (its text is not the buffer's):
/// the reason names the error to fix, the component's own first, else the file's first.
fn blocked_by_errors(analysis: &Analysis, component: ComponentId) -> Option<String> {
    let range = analysis.program.component(component).range;
    let mut errors = analysis.diagnostics.iter().filter(|d| d.severity == Severity::Error);
    let error = errors
        .clone()
        .find(|d| range.start <= d.range.start && d.range.start <= range.end)
        .or_else(|| errors.next())?;
    let at = analysis.line_index.line_col_utf16(analysis.text(), error.range.start as usize);
    let what = if matches!(error.code, Code::SyntaxError | Code::MissingToken) { "syntax error" } else { "error" };
    Some(format!("fix the {what} at {}:{} first", at.line + 1, at.col + 1))
}

/// Sealed partitioning changes behaviour (each instance acts on its own aggregates): the title says
/// so, and that the invariants need checking.
fn sealed_title(component: &str) -> String {
    format!("Partition `{component}` with sealing (aggregates per instance; check invariants with `compart verify`)")
}

/// Grid quorums commit with other nodes than the majority: the title says so, and that the
/// invariants need checking.
fn grid_title(component: &str) -> String {
    format!(
        "Arrange `{component}` in a grid of {} rows (flexible quorums: a row commits; check invariants with `compart verify`)",
        rewrite::DEFAULT_GRID_ROWS
    )
}

/// Batching changes the replies' log positions: the title says so, and that the invariants need
/// checking.
fn batch_title(component: &str) -> String {
    format!(
        "Batch `{component}`'s requests ({} per batch at most; positions change: check invariants with `compart verify`)",
        rewrite::DEFAULT_BATCH_SIZE
    )
}
