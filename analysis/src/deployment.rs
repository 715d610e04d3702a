//! The deployment file beside a program, kept in step with it: what a rewrite or a rename changes
//! in it, applied as an edit of the file's text (comments, order and layout kept), never a
//! rewrite of the whole file. The editor's rewrite actions and renames and `compart rewrite` all
//! go through [`update`], so the Run lens and `compart run` find every component after a rewrite.
//!
//! The file's format is the runtime's (`runtime/src/deploy.rs` parses it): `[components]` gives
//! each component's logical nodes (`c = 2` or `c = { instances = 2, partitions = 3 }`),
//! `[partitions]` the instances per logical node, `[workload]` the load generator's settings,
//! `[batches]` the batchings the program holds (`rewrite::batch`: each batcher with the channel
//! that carries one request per batch and the batch size, which the program alone does not say;
//! the runtime ignores it, the cost model reads it: [`batchings`]). This module only reads and
//! writes those names and counts, and leaves every other key as it is.
//! It lives here rather than in the runtime because both the language server and the CLI call
//! it, and the language server does not depend on the runtime (ARCHITECTURE.md).

use std::path::{Path, PathBuf};

use serde::Serialize;
use toml_edit::{DocumentMut, Item, Key, Table, TableLike, Value};

use crate::model::Program;

/// The deployment file of `program`: the same stem with `.toml` (`examples/paxos.toml` for
/// `examples/paxos.ded`), what `compart run`'s Run lens, `compart verify` and `compart rewrite`
/// read when no file is named.
pub fn beside(program: &Path) -> PathBuf {
    program.with_extension("toml")
}

/// Instances per logical node a partitioning gives a component that had one: the fewest that
/// split its work (edit the file for more).
pub const PARTITIONS: u32 = 2;

/// One change to a deployment file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Change {
    /// A component a rewrite added. It gets as many logical nodes as the component it partners
    /// ([`Program::logical_count`]): a decoupled part serves each node of the component it was
    /// split from with its own partner node, so fewer nodes would merge the state of several
    /// nodes into one and more would stay idle; a component without a partner gets one.
    Add { component: String },
    /// A component a rewrite partitioned: [`PARTITIONS`] instances per logical node, unless the
    /// file already gives it more than one.
    Partition { component: String },
    /// A renamed component: its keys in `[components]` and `[partitions]`, and `[workload] entry`.
    RenameComponent { from: String, to: String },
    /// A renamed relation: `[workload] input`, `output` and its key in `[workload.mix]`.
    RenameRelation { from: String, to: String },
    /// A component a rewrite arranged in a grid of `rows` (`rewrite::grid`): `[grids] c = { rows,
    /// columns }`, and `[components] c` set to rows x columns, so that every node has a place.
    /// Without `columns`: as many as the file's nodes fill, rounded up.
    Grid { component: String, rows: usize, columns: Option<usize> },
    /// An input without columns a rewrite added (thrifty's `m_widen()`): nothing but a timer feeds
    /// it, so `[timers]` gets it with [`TIMER_PERIOD_S`], unless the file gives a period already.
    Timer { input: String },
    /// A batcher a batching added (`rewrite::batch`): `[batches] batcher = { channel, size }`, so
    /// that whatever costs the program later knows its batch channel carries one fact per batch.
    Batch { batcher: String, channel: String, size: usize },
    /// Components a rewrite merged into one (`rewrite::share`): `into` gets the most logical nodes
    /// and instances any part had (each part could run on that many, and the merge is there to
    /// free machines; the optimizer sizes it to the summed load), and the parts are dropped.
    Share { parts: Vec<String>, into: String },
}

/// The period a new timer gets, in seconds: long against a tick on the local cluster (so a
/// widening resends only what a crashed node held back), short against a client's patience.
pub const TIMER_PERIOD_S: f64 = 0.2;

/// Gives every grid change `columns` (`compart rewrite --grid C --columns N`).
pub fn set_grid_columns(changes: &mut [Change], columns: usize) {
    for change in changes {
        if let Change::Grid { columns: c, .. } = change {
            *c = Some(columns);
        }
    }
}

/// What a rewrite from `original` to `rewritten` changes in the deployment: every component it
/// added, and every component it partitioned.
pub fn rewrite_changes(original: &Program, rewritten: &Program) -> Vec<Change> {
    let mut out = Vec::new();
    for c in &rewritten.components {
        match original.component_by_name(&c.name).map(|id| original.component(id)) {
            None => {
                // Components gone whose every relation `c` now declares were merged into it.
                let parts: Vec<String> = original
                    .components
                    .iter()
                    .filter(|o| rewritten.component_by_name(&o.name).is_none() && !o.relations.is_empty())
                    .filter(|o| {
                        o.relations.iter().all(|&r| {
                            rewritten.relation_by_name(&original.relation(r).name).is_some_and(|n| {
                                rewritten.relation(n).component == rewritten.component_by_name(&c.name)
                            })
                        })
                    })
                    .map(|o| o.name.clone())
                    .collect();
                if parts.is_empty() {
                    out.push(Change::Add { component: c.name.clone() })
                } else {
                    out.push(Change::Share { parts, into: c.name.clone() })
                }
            }
            Some(before) if c.placement.is_some() && before.placement.is_none() => {
                out.push(Change::Partition { component: c.name.clone() })
            }
            Some(_) => {}
        }
        for &r in &c.relations {
            let rel = rewritten.relation(r);
            let new = original.relation_by_name(&rel.name).is_none();
            if new && rel.kind == crate::model::RelationKind::Input && rel.arity() == 0 {
                out.push(Change::Timer { input: rel.name.clone() });
            }
        }
        if let Some(rows) = crate::rewrite::grid_rows_of(rewritten, &c.name) {
            if crate::rewrite::grid_rows_of(original, &c.name) != Some(rows) {
                out.push(Change::Grid { component: c.name.clone(), rows, columns: None });
            }
        }
    }
    out
}

/// [`rewrite_changes`] of a rewrite's result: with the batcher a batching added, which the programs
/// alone do not tell apart from any new component (its batch size is in no declaration).
pub fn result_changes(original: &Program, rewritten: &Program, result: &crate::rewrite::RewriteResult) -> Vec<Change> {
    let mut out = rewrite_changes(original, rewritten);
    if let Some(b) = &result.batcher {
        out.push(Change::Batch { batcher: b.name.clone(), channel: b.channel.clone(), size: b.size });
    }
    out
}

/// A deployment file after [`update`]: its new text and one line per change made, in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Updated {
    pub text: String,
    pub notes: Vec<String>,
}

/// Applies `changes` to the deployment file `text` of `program` (the program after the change:
/// the rewritten one; for a rename, either). Without a file (`None`), the new file lists every
/// component of `program` with one logical node, then the changes apply to it. A file that is not
/// valid TOML, or whose `[components]` or `[partitions]` is not a table, is an error: it is not
/// touched.
pub fn update(text: Option<&str>, program: &Program, changes: &[Change]) -> Result<Updated, String> {
    let mut notes = Vec::new();
    let mut doc = match text {
        Some(text) => text.parse::<DocumentMut>().map_err(|e| format!("not valid TOML: {}", e.message()))?,
        None => {
            notes.push("a new file: every component with one logical node".to_string());
            new_file(program)
        }
    };
    for change in changes {
        let note = match change {
            Change::Add { component } => add(&mut doc, program, component)?,
            Change::Partition { component } => partition(&mut doc, component)?,
            Change::RenameComponent { from, to } => rename_component(&mut doc, from, to)?,
            Change::RenameRelation { from, to } => rename_relation(&mut doc, from, to),
            Change::Grid { component, rows, columns } => grid(&mut doc, component, *rows, *columns)?,
            Change::Timer { input } => timer(&mut doc, input)?,
            Change::Share { parts, into } => share(&mut doc, program, parts, into)?,
            Change::Batch { batcher, channel, size } => batch(&mut doc, batcher, channel, *size)?,
        };
        notes.extend(note);
    }
    Ok(Updated { text: doc.to_string(), notes })
}

fn new_file(program: &Program) -> DocumentMut {
    let mut doc = DocumentMut::new();
    let mut components = Table::new();
    for c in &program.components {
        components.insert(&c.name, toml_edit::value(1));
    }
    components.decor_mut().set_prefix("# Logical nodes of each component (instances with [partitions]).\n");
    doc.insert("components", Item::Table(components));
    doc
}

/// The table `name` of the document, created (as a `[name]` section) when absent.
fn section<'a>(doc: &'a mut DocumentMut, name: &str) -> Result<&'a mut dyn TableLike, String> {
    let item = doc.entry(name).or_insert_with(|| Item::Table(Table::new()));
    item.as_table_like_mut().ok_or_else(|| format!("`{name}` is not a table"))
}

/// `c = 2` or `c = { instances = 2, .. }` (also as a `[components.c]` section).
fn logical_nodes(item: &Item) -> Option<i64> {
    match item {
        Item::Value(Value::Integer(n)) => Some(*n.value()),
        other => other.as_table_like()?.get("instances")?.as_integer(),
    }
}

fn add(doc: &mut DocumentMut, program: &Program, component: &str) -> Result<Option<String>, String> {
    let Some(id) = program.component_by_name(component) else {
        return Err(format!("`{component}` is not a component of the program"));
    };
    let components = section(doc, "components")?;
    if components.contains_key(component) {
        return Ok(None);
    }
    let given = |name: &str| components.get(name).and_then(logical_nodes).and_then(|n| usize::try_from(n).ok());
    let nodes = program.logical_count(id, given);
    let why = match program.partnered_with(id) {
        Some(p) => format!(" (one per `{}` node: each forwards to its own partner)", program.component(p).name),
        None => String::new(),
    };
    // A file that names hosts runs beyond this machine: the new component's nodes would land on
    // 127.0.0.1 there, where no peer reaches them. Its addresses cannot be guessed; say so.
    let placed = components
        .iter()
        .find(|(_, item)| item.as_table_like().is_some_and(|t| t.contains_key("hosts") || t.contains_key("host")))
        .map(|(name, _)| name);
    let hosts = match placed {
        Some(other) => format!(
            "; `{other}` names its hosts, so give `{component}` `hosts` or `host` too (without, its nodes run on 127.0.0.1)"
        ),
        None => String::new(),
    };
    components.insert(component, toml_edit::value(nodes as i64));
    Ok(Some(format!("[components] {component} = {nodes}{why}{hosts}")))
}

fn share(doc: &mut DocumentMut, program: &Program, parts: &[String], into: &str) -> Result<Option<String>, String> {
    let count = |section: &str, name: &str, read: &dyn Fn(&Item) -> Option<i64>| {
        doc.get(section).and_then(|s| s.get(name)).and_then(read)
    };
    let nodes = parts.iter().filter_map(|p| count("components", p, &logical_nodes)).max();
    let instances = parts.iter().filter_map(|p| instances_per_node(doc, p)).max().unwrap_or(1);
    let hosts = parts.iter().find(|p| {
        doc.get("components")
            .and_then(|c| c.get(p))
            .and_then(Item::as_table_like)
            .is_some_and(|t| t.contains_key("hosts") || t.contains_key("host"))
    });
    let nodes = match (nodes, program.component_by_name(into)) {
        (Some(n), _) => n,
        (None, Some(id)) => program.logical_count(id, |_| None) as i64,
        (None, None) => return Err(format!("`{into}` is not a component of the program")),
    };
    for section_name in ["components", "partitions"] {
        if let Some(table) = doc.get_mut(section_name).and_then(Item::as_table_like_mut) {
            for p in parts {
                table.remove(p);
            }
        }
    }
    section(doc, "components")?.insert(into, toml_edit::value(nodes));
    let mut note = format!("[components] {into} = {nodes}, replacing {}", parts.join(" and "));
    if instances > 1 {
        section(doc, "partitions")?.insert(into, toml_edit::value(instances));
        note.push_str(&format!("; [partitions] {into} = {instances}"));
    }
    if let Some(p) = hosts {
        note.push_str(&format!(
            "; `{p}` named its hosts: give `{into}` `hosts` or `host` (without, its nodes run on 127.0.0.1)"
        ));
    }
    Ok(Some(note))
}

/// The instances per logical node a file gives `component`: its `[partitions]` entry, else its
/// `[components]` entry's `partitions` (the runtime's order); None when neither says.
fn instances_per_node(doc: &DocumentMut, component: &str) -> Option<i64> {
    doc.get("partitions")
        .and_then(|p| p.get(component))
        .and_then(Item::as_integer)
        .or_else(|| doc.get("components")?.get(component)?.as_table_like()?.get("partitions")?.as_integer())
}

/// For a component whose processes grow from `before` to `after`: what its `hosts` list (one
/// entry per process) now lacks, in words; None when it has no list (a `host` template or the
/// default addresses follow any count).
fn hosts_to_add(doc: &DocumentMut, component: &str, after: i64) -> Option<String> {
    let entry = doc.get("components")?.get(component)?.as_table_like()?;
    let listed = entry.get("hosts")?.as_array()?.len() as i64;
    (listed < after).then(|| {
        format!(
            "; `{component}` lists {listed} hosts and now runs {after} processes: add {} (one per process, in order), or the runtime refuses the file",
            after - listed
        )
    })
}

fn partition(doc: &mut DocumentMut, component: &str) -> Result<Option<String>, String> {
    let in_partitions = doc.get("partitions").and_then(|p| p.get(component)).and_then(Item::as_integer);
    let in_component = doc.get("components").and_then(|c| c.get(component)).and_then(|c| {
        let table = c.as_table_like()?;
        Some(table.get("partitions").and_then(Item::as_integer))
    });
    // `[partitions]` overrides the component's own `partitions` (as the runtime reads it).
    if in_partitions.or(in_component.flatten()).is_some_and(|n| n > 1) {
        return Ok(None);
    }
    let n = toml_edit::value(PARTITIONS as i64);
    let nodes = doc.get("components").and_then(|c| c.get(component)).and_then(logical_nodes).unwrap_or(1);
    let hosts = hosts_to_add(doc, component, nodes * PARTITIONS as i64).unwrap_or_default();
    if in_partitions.is_none() && in_component.is_some() {
        let table = doc
            .get_mut("components")
            .and_then(|c| c.get_mut(component))
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| format!("`components.{component}` is not a table"))?;
        table.insert("partitions", n);
        // An inline table holds no comments: its spacing is made regular again after the insert.
        if let Some(inline) =
            doc.get_mut("components").and_then(|c| c.get_mut(component)).and_then(Item::as_inline_table_mut)
        {
            inline.fmt();
        }
        return Ok(Some(format!("[components] {component}.partitions = {PARTITIONS}{hosts}")));
    }
    section(doc, "partitions")?.insert(component, n);
    Ok(Some(format!("[partitions] {component} = {PARTITIONS}{hosts}")))
}

/// `[grids] c = { rows = R, columns = C }`, and the component's logical nodes set to R x C (the
/// runtime refuses a grid that its nodes do not fill).
fn grid(doc: &mut DocumentMut, component: &str, rows: usize, columns: Option<usize>) -> Result<Option<String>, String> {
    let entry = doc.get("components").and_then(|c| c.get(component));
    let nodes = entry.and_then(logical_nodes).and_then(|n| usize::try_from(n).ok()).unwrap_or(1);
    let rows = rows.max(1);
    let columns = columns.unwrap_or(nodes.div_ceil(rows)).max(1);
    let total = (rows * columns) as i64;
    let mut note = format!("[grids] {component} = {{ rows = {rows}, columns = {columns} }}");
    if total != nodes as i64 {
        let hosts = hosts_to_add(doc, component, total).unwrap_or_default();
        let components = section(doc, "components")?;
        match components.get_mut(component).and_then(Item::as_table_like_mut) {
            Some(table) => {
                table.insert("instances", toml_edit::value(total));
            }
            None => {
                components.insert(component, toml_edit::value(total));
            }
        }
        note.push_str(&format!(
            "; [components] {component} = {total} (was {nodes}: a grid of {rows} x {columns} needs that many){hosts}"
        ));
    }
    let mut shape = toml_edit::InlineTable::new();
    shape.insert("rows", (rows as i64).into());
    shape.insert("columns", (columns as i64).into());
    shape.fmt();
    section(doc, "grids")?.insert(component, Item::Value(Value::InlineTable(shape)));
    Ok(Some(note))
}

fn timer(doc: &mut DocumentMut, input: &str) -> Result<Option<String>, String> {
    let timers = section(doc, "timers")?;
    if timers.contains_key(input) {
        return Ok(None);
    }
    timers.insert(input, toml_edit::value(TIMER_PERIOD_S));
    Ok(Some(format!("[timers] {input} = {TIMER_PERIOD_S} (seconds: how often every node injects `{input}()`)")))
}

/// A `[batches]` entry's value: `{ channel = "request_batch", size = 64 }`.
fn batch_entry(channel: &str, size: usize) -> toml_edit::InlineTable {
    let mut entry = toml_edit::InlineTable::new();
    entry.insert("channel", channel.into());
    entry.insert("size", (size as i64).into());
    entry.fmt();
    entry
}

/// The `[batches]` section of a file written whole (the optimizer's plan); empty without
/// batchings.
pub fn batches_section(batched: &[crate::optimize::Batched]) -> String {
    if batched.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n[batches]\n");
    for b in batched {
        out.push_str(&format!("{} = {}\n", b.batcher, batch_entry(&b.channel, b.size)));
    }
    out
}

fn batch(doc: &mut DocumentMut, batcher: &str, channel: &str, size: usize) -> Result<Option<String>, String> {
    let entry = batch_entry(channel, size);
    let note = format!("[batches] {batcher} = {entry} (what the cost model needs to cost the batching)");
    section(doc, "batches")?.insert(batcher, Item::Value(Value::InlineTable(entry)));
    Ok(Some(note))
}

/// The batchings a deployment file records (`[batches]`), for the cost model: each batcher with
/// its batch channel, size, and instances per logical node (`[partitions]`, or its
/// `[components]` entry's `partitions`; 1 without). No file, or no `[batches]`: none. An entry
/// that names no component or channel of `program`, or lacks a size of 2 or more, is an error
/// naming it.
pub fn batchings(text: Option<&str>, program: &Program) -> Result<Vec<crate::optimize::Batched>, String> {
    let Some(text) = text else { return Ok(Vec::new()) };
    let doc: DocumentMut = text.parse().map_err(|e| format!("not a TOML file: {e}"))?;
    let Some(section) = doc.get("batches") else { return Ok(Vec::new()) };
    let table = section.as_table_like().ok_or("`batches` must be a table")?;
    let mut out = Vec::new();
    for (name, item) in table.iter() {
        let bad = |why: &str| {
            format!("[batches] `{name}`: {why} (expected `{name} = {{ channel = \"CHANNEL\", size = N }}`)")
        };
        let entry = item.as_table_like().ok_or_else(|| bad("not a table"))?;
        if let Some((key, _)) = entry.iter().find(|(k, _)| !matches!(*k, "channel" | "size")) {
            return Err(bad(&format!("unknown key `{key}`")));
        }
        if program.component_by_name(name).is_none() {
            return Err(bad("not a component of the program"));
        }
        let channel = entry.get("channel").and_then(Item::as_str).ok_or_else(|| bad("no `channel` string"))?;
        let is_channel = program
            .relation_by_name(channel)
            .is_some_and(|r| program.relation(r).kind == crate::model::RelationKind::Channel);
        if !is_channel {
            return Err(bad(&format!("`{channel}` is not a channel of the program")));
        }
        let size = entry.get("size").and_then(Item::as_integer).filter(|&n| n >= 2);
        let size = size.ok_or_else(|| bad("`size` must be an integer of 2 or more"))?;
        let partitions = instances_per_node(&doc, name).unwrap_or(1);
        out.push(crate::optimize::Batched {
            batcher: name.to_string(),
            channel: channel.to_string(),
            size: size as usize,
            instances: partitions.max(1) as usize,
            fill: None,
        });
    }
    Ok(out)
}

/// Renames the key `from` of `table` to `to`, in place: same position, same comments and layout.
fn rename_key(table: &mut dyn TableLike, from: &str, to: &str) -> Result<bool, String> {
    if !table.contains_key(from) {
        return Ok(false);
    }
    if table.contains_key(to) {
        return Err(format!("`{to}` is already listed"));
    }
    let entries: Vec<(Key, Item)> =
        table.iter().filter_map(|(name, _)| table.get_key_value(name).map(|(k, v)| (k.clone(), v.clone()))).collect();
    table.clear();
    for (key, item) in entries {
        let key = if key.get() == from { Key::new(to).with_leaf_decor(key.leaf_decor().clone()) } else { key };
        table.entry_format(&key).or_insert(item);
    }
    Ok(true)
}

/// Sets the string `table[key]` to `to` when it is `from`, keeping its layout.
fn replace_string(table: &mut dyn TableLike, key: &str, from: &str, to: &str) -> bool {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(v) if v.as_str() == Some(from) => {
            let decor = v.decor().clone();
            *v = Value::from(to);
            *v.decor_mut() = decor;
            true
        }
        _ => false,
    }
}

fn rename_component(doc: &mut DocumentMut, from: &str, to: &str) -> Result<Option<String>, String> {
    let mut renamed = Vec::new();
    for name in ["components", "partitions", "grids", "batches"] {
        if let Some(table) = doc.get_mut(name).and_then(Item::as_table_like_mut) {
            if rename_key(table, from, to).map_err(|e| format!("[{name}]: {e}"))? {
                renamed.push(format!("[{name}]"));
            }
        }
    }
    if let Some(workload) = doc.get_mut("workload").and_then(Item::as_table_like_mut) {
        if replace_string(workload, "entry", from, to) {
            renamed.push("[workload] entry".into());
        }
    }
    Ok((!renamed.is_empty()).then(|| format!("`{from}` renamed to `{to}` in {}", renamed.join(", "))))
}

fn rename_relation(doc: &mut DocumentMut, from: &str, to: &str) -> Option<String> {
    let mut renamed = Vec::new();
    // A clash cannot happen: `to` is a new relation name, so no table lists it.
    if let Some(timers) = doc.get_mut("timers").and_then(Item::as_table_like_mut) {
        if rename_key(timers, from, to).unwrap_or(false) {
            renamed.push("[timers]".to_string());
        }
    }
    // A batch channel a rename reaches.
    if let Some(batches) = doc.get_mut("batches").and_then(Item::as_table_like_mut) {
        let mut renamed_channel = false;
        for (_, entry) in batches.iter_mut() {
            if let Some(entry) = entry.as_table_like_mut() {
                renamed_channel |= replace_string(entry, "channel", from, to);
            }
        }
        if renamed_channel {
            renamed.push("[batches]".to_string());
        }
    }
    if let Some(workload) = doc.get_mut("workload").and_then(Item::as_table_like_mut) {
        for key in ["input", "output"] {
            if replace_string(workload, key, from, to) {
                renamed.push(format!("[workload] {key}"));
            }
        }
        if let Some(mix) = workload.get_mut("mix").and_then(Item::as_table_like_mut) {
            if rename_key(mix, from, to).unwrap_or(false) {
                renamed.push("[workload.mix]".into());
            }
        }
    }
    (!renamed.is_empty()).then(|| format!("`{from}` renamed to `{to}` in {}", renamed.join(", ")))
}

/// The changes as one line for a message or an action's title: `[components] d = 2; ...`.
pub fn summary(updated: &Updated) -> String {
    updated.notes.join("; ")
}

/// How the load generator delivers each request to the nodes of its entry component: the
/// deployment's `[workload] send_to` (`all`, the default, or `round-robin`, as
/// `runtime/src/loadgen` reads it). Batching keeps it ([`crate::rewrite::Delivery`]); `None`
/// (no file) is the default.
pub fn request_delivery(text: Option<&str>) -> Result<crate::rewrite::Delivery, String> {
    stated_request_delivery(text).map(Option::unwrap_or_default)
}

/// [`request_delivery`] as the file states it: `None` when it has no `send_to` (or there is no
/// file), which the bounded check (`compart verify`) tells apart from an explicit `all`.
pub fn stated_request_delivery(text: Option<&str>) -> Result<Option<crate::rewrite::Delivery>, String> {
    use crate::rewrite::Delivery;
    let Some(text) = text else { return Ok(None) };
    let doc: DocumentMut = text.parse().map_err(|e| format!("not a TOML file: {e}"))?;
    let send_to = doc.get("workload").and_then(|w| w.get("send_to"));
    match send_to.map(|v| v.as_str()) {
        None => Ok(None),
        Some(Some("all")) => Ok(Some(Delivery::Every)),
        Some(Some("round-robin")) => Ok(Some(Delivery::One)),
        Some(_) => Err("[workload] send_to: expected `all` or `round-robin`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROGRAM: &str = "component front {\n    input req(id: int)\n    fwd@d(i) :~ req(i), nodes(\"back\", d).\n}\ncomponent back {\n    channel fwd(id: int)\n    output rep(id: int)\n    table seen(id: int)\n    seen(i) :- fwd(i).\n    rep(i) :- fwd(i).\n}\n";

    fn program(text: &str) -> Program {
        let analysis = crate::analyze(text);
        assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
        analysis.program
    }

    /// `back` split into `back` and `back_rep`, which serves each `back` node as its partner.
    fn decoupled() -> Program {
        let analysis = crate::analyze(PROGRAM);
        let rules = crate::rewrite::select_rules(&analysis, "back", &["rep"]).unwrap();
        let result = crate::rewrite::decouple(&analysis, "back", &rules, "back_rep").unwrap();
        program(&result.new_text)
    }

    const FILE: &str = "# Two fronts, three backs.\nbase_port = 7300\n\n[components]\nfront = 2 # the entry\nback = { instances = 3 }\n\n[workload]\nentry = \"front\"\ninput = \"req\" # requests\n\n[workload.mix]\nreq = 1\n";

    /// Thrifty's widening input gets a timer; a period the file gives is kept; a rename follows.
    #[test]
    fn a_new_input_without_columns_gets_a_timer() {
        let before = program(PROGRAM);
        let after =
            program(&PROGRAM.replace("    input req(id: int)\n", "    input req(id: int)\n    input req_widen()\n"));
        let changes = rewrite_changes(&before, &after);
        assert_eq!(changes, [Change::Timer { input: "req_widen".into() }]);
        let updated = update(Some(FILE), &after, &changes).unwrap();
        assert!(updated.text.ends_with("[timers]\nreq_widen = 0.2\n"), "{}", updated.text);
        assert_eq!(updated.notes, ["[timers] req_widen = 0.2 (seconds: how often every node injects `req_widen()`)"]);
        let given = format!("{FILE}\n[timers]\nreq_widen = 1.5\n");
        let kept = update(Some(&given), &after, &changes).unwrap();
        assert_eq!((kept.text.as_str(), kept.notes.len()), (given.as_str(), 0));
        let renamed = update(
            Some(&updated.text),
            &after,
            &[Change::RenameRelation { from: "req_widen".into(), to: "widen".into() }],
        )
        .unwrap();
        assert!(renamed.text.ends_with("[timers]\nwiden = 0.2\n"), "{}", renamed.text);
    }

    #[test]
    fn request_delivery_is_the_workloads_send_to() {
        use crate::rewrite::Delivery;
        assert_eq!(request_delivery(None), Ok(Delivery::Every));
        assert_eq!(request_delivery(Some(FILE)), Ok(Delivery::Every));
        let rr = FILE.replace("[workload]\n", "[workload]\nsend_to = \"round-robin\"\n");
        assert_eq!(request_delivery(Some(&rr)), Ok(Delivery::One));
        let all = FILE.replace("[workload]\n", "[workload]\nsend_to = \"all\"\n");
        assert_eq!(request_delivery(Some(&all)), Ok(Delivery::Every));
        assert_eq!(stated_request_delivery(Some(FILE)), Ok(None));
        assert_eq!(stated_request_delivery(Some(&all)), Ok(Some(Delivery::Every)));
        assert!(request_delivery(Some("[workload]\nsend_to = \"some\"\n")).is_err());
        assert!(request_delivery(Some("[workload\n")).is_err());
    }

    #[test]
    fn a_decoupled_part_gets_its_partners_count_and_comments_stay() {
        let after = decoupled();
        let changes = rewrite_changes(&program(PROGRAM), &after);
        assert_eq!(changes, [Change::Add { component: "back_rep".into() }]);
        let updated = update(Some(FILE), &after, &changes).unwrap();
        insta::assert_snapshot!(updated.text, @r#"
        # Two fronts, three backs.
        base_port = 7300

        [components]
        front = 2 # the entry
        back = { instances = 3 }
        back_rep = 3

        [workload]
        entry = "front"
        input = "req" # requests

        [workload.mix]
        req = 1
        "#);
        assert_eq!(
            updated.notes,
            ["[components] back_rep = 3 (one per `back` node: each forwards to its own partner)"]
        );
        // Already listed: left as the user wrote it.
        let again = update(Some(&updated.text), &after, &changes).unwrap();
        assert_eq!((again.text.as_str(), again.notes.len()), (updated.text.as_str(), 0));
    }

    #[test]
    fn partitions_go_where_the_file_keeps_them() {
        let p = program(&PROGRAM.replace("component back {", "component back partitioned by fwd.id {"));
        let change = [Change::Partition { component: "back".into() }];
        // Beside the count when the component is a table, else in [partitions] (made if absent).
        let inline = update(Some("[components]\nfront = 1\nback = { instances = 3 }\n"), &p, &change).unwrap();
        assert_eq!(inline.text, "[components]\nfront = 1\nback = { instances = 3, partitions = 2 }\n");
        let plain = update(Some("[components]\nfront = 1\nback = 3\n"), &p, &change).unwrap();
        assert_eq!(plain.text, "[components]\nfront = 1\nback = 3\n\n[partitions]\nback = 2\n");
        assert_eq!(plain.notes, ["[partitions] back = 2"]);
        let listed = "[components]\nfront = 1\nback = 3\n\n[partitions] # instances\nfront = 1\nback = 1\n";
        let table = update(Some(listed), &p, &change).unwrap();
        assert_eq!(table.text, listed.replace("back = 1", "back = 2"));
        let section =
            update(Some("[components]\nfront = 1\n\n[components.back]\ninstances = 3\n"), &p, &change).unwrap();
        assert_eq!(section.text, "[components]\nfront = 1\n\n[components.back]\ninstances = 3\npartitions = 2\n");
        // More than one already: kept.
        let kept = "[components]\nfront = 1\nback = { instances = 3, partitions = 4 }\n";
        assert_eq!(update(Some(kept), &p, &change).unwrap().text, kept);
    }

    #[test]
    fn a_grid_sets_the_node_count_it_fills() {
        let p = program(PROGRAM);
        let grid = |columns| [Change::Grid { component: "back".into(), rows: 2, columns }];
        // Columns given: the count follows (an inline table keeps its other keys).
        let given =
            update(Some("[components]\nfront = 1\nback = { instances = 3 } # backs\n"), &p, &grid(Some(3))).unwrap();
        assert_eq!(
            given.text,
            "[components]\nfront = 1\nback = { instances = 6 } # backs\n\n[grids]\nback = { rows = 2, columns = 3 }\n"
        );
        assert_eq!(
            given.notes,
            ["[grids] back = { rows = 2, columns = 3 }; [components] back = 6 (was 3: a grid of 2 x 3 needs that many)"]
        );
        // Without: as many columns as the nodes fill, rounded up; a count that fills it stays.
        let filled = update(Some("[components]\nfront = 1\nback = 4\n"), &p, &grid(None)).unwrap();
        assert_eq!(filled.text, "[components]\nfront = 1\nback = 4\n\n[grids]\nback = { rows = 2, columns = 2 }\n");
        let rounded = update(Some("[components]\nfront = 1\nback = 3\n"), &p, &grid(None)).unwrap();
        assert!(rounded.text.contains("back = 4\n") && rounded.text.contains("columns = 2"), "{}", rounded.text);
        // A rename carries the grid along.
        let renamed =
            update(Some(&filled.text), &p, &[Change::RenameComponent { from: "back".into(), to: "store".into() }])
                .unwrap();
        assert!(renamed.text.contains("[grids]\nstore = { rows = 2, columns = 2 }"), "{}", renamed.text);
    }

    #[test]
    fn renames_keep_position_comments_and_other_keys() {
        let file = "base_port = 7300\n[components]\n# in front\nfront = 2 # the entry\nback = 3\n\n[partitions]\nfront = 1\n\n[workload]\nentry = \"front\" # here\ninput = \"req\"\noutput = \"rep\"\nhosts = [\"a\"]\n\n[workload.mix]\nreq = 1\n";
        let p = program(PROGRAM);
        let renamed = update(Some(file), &p, &[Change::RenameComponent { from: "front".into(), to: "gate".into() }]);
        let renamed = renamed.unwrap();
        assert_eq!(
            renamed.text,
            file.replace("front = 2", "gate = 2").replace("front = 1", "gate = 1").replace("\"front\"", "\"gate\"")
        );
        assert_eq!(renamed.notes, ["`front` renamed to `gate` in [components], [partitions], [workload] entry"]);
        let relation = update(Some(file), &p, &[Change::RenameRelation { from: "req".into(), to: "ask".into() }]);
        let relation = relation.unwrap();
        assert_eq!(relation.text, file.replace("\"req\"", "\"ask\"").replace("req = 1", "ask = 1"));
        // A name the file does not mention: nothing changes.
        let none = update(Some(file), &p, &[Change::RenameComponent { from: "x".into(), to: "y".into() }]).unwrap();
        assert_eq!((none.text.as_str(), none.notes.len()), (file, 0));
        // A clash is refused, not merged.
        let clash = update(Some(file), &p, &[Change::RenameComponent { from: "front".into(), to: "back".into() }]);
        assert!(clash.unwrap_err().contains("`back` is already listed"));
    }

    #[test]
    fn files_that_name_hosts_say_what_a_rewrite_leaves_to_place() {
        let hosted = "[components]\nfront = { instances = 2, hosts = [\"198.18.0.1\", \"198.18.0.2\"] }\nback = { instances = 3, hosts = [\"198.18.0.3\", \"198.18.0.4\", \"198.18.0.5\"] }\n";
        // A new component cannot be given addresses: the note says it has none.
        let after = decoupled();
        let updated = update(Some(hosted), &after, &rewrite_changes(&program(PROGRAM), &after)).unwrap();
        assert!(updated.notes[0].contains("give `back_rep` `hosts` or `host` too"), "{:?}", updated.notes);
        // Partitioned: six processes, three listed.
        let p = program(PROGRAM);
        let updated = update(Some(hosted), &p, &[Change::Partition { component: "back".into() }]).unwrap();
        assert_eq!(
            updated.notes,
            ["[components] back.partitions = 2; `back` lists 3 hosts and now runs 6 processes: add 3 (one per process, in order), or the runtime refuses the file"]
        );
        // A template follows any count, and default addresses need nothing: no note beyond the change.
        let templated = "[components]\nfront = 1\nback = { instances = 3, host = \"back-{n}.svc\" }\n";
        let updated = update(Some(templated), &p, &[Change::Partition { component: "back".into() }]).unwrap();
        assert_eq!(updated.notes, ["[components] back.partitions = 2"]);
        let updated = update(Some(FILE), &after, &rewrite_changes(&p, &after)).unwrap();
        assert!(!updated.notes[0].contains("hosts"), "{:?}", updated.notes);
    }

    #[test]
    fn a_missing_file_lists_every_component_once() {
        let after = decoupled();
        let changes = rewrite_changes(&program(PROGRAM), &after);
        let created = update(None, &after, &changes).unwrap();
        assert_eq!(
            created.text,
            "# Logical nodes of each component (instances with [partitions]).\n[components]\nfront = 1\nback = 1\nback_rep = 1\n"
        );
        assert_eq!(created.notes, ["a new file: every component with one logical node"]);
    }

    /// Any text, e.g. a file cut anywhere while it is being written: an error or an edit, never a
    /// panic.
    #[test]
    fn truncated_files_never_panic() {
        let p = decoupled();
        let changes = [
            Change::Add { component: "back_rep".into() },
            Change::Partition { component: "back".into() },
            Change::RenameComponent { from: "front".into(), to: "gate".into() },
            Change::RenameRelation { from: "req".into(), to: "ask".into() },
        ];
        let file = format!("{FILE}[partitions]\nback = 1\n[components.x]\ninstances = 2\n");
        for end in (0..=file.len()).filter(|&i| file.is_char_boundary(i)) {
            for change in &changes {
                let _ = update(Some(&file[..end]), &p, std::slice::from_ref(change));
            }
        }
    }

    /// A server that answers each request: what the batching tests batch.
    const SERVER: &str = "component server {\n    input req(id: int, v: string) key(id)\n    output rep(id: int, v: string)\n    rep(i, v) :- req(i, v).\n}\n";

    /// A batching's batcher lands in `[batches]` with its channel and size, and reads back as the
    /// cost model's batching, its instances from `[partitions]`; renames follow it.
    #[test]
    fn a_batching_is_recorded_and_read_back() {
        let analysis = crate::analyze(SERVER);
        let result = crate::rewrite::batch(&analysis, "server", 8, crate::rewrite::Delivery::Every).unwrap();
        let after = program(&result.new_text);
        let changes = result_changes(&analysis.program, &after, &result);
        let batch = Change::Batch { batcher: "server_batcher".into(), channel: "req_batch".into(), size: 8 };
        assert_eq!(changes, [Change::Add { component: "server_batcher".into() }, batch]);
        let updated = update(Some("[components]\nserver = 2\n"), &after, &changes).unwrap();
        assert_eq!(
            updated.text,
            "[components]\nserver = 2\nserver_batcher = 1\n\n[batches]\nserver_batcher = { channel = \"req_batch\", size = 8 }\n"
        );
        assert!(updated.notes[1].starts_with("[batches] server_batcher = { channel = \"req_batch\", size = 8 }"));
        let read = batchings(Some(&updated.text), &after).unwrap();
        let [b] = &read[..] else { panic!("{read:?}") };
        assert_eq!(
            (b.batcher.as_str(), b.channel.as_str(), b.size, b.instances),
            ("server_batcher", "req_batch", 8, 1)
        );
        // Instances per logical node from `[partitions]`, or the component's own `partitions`.
        let partitioned = format!("{}\n[partitions]\nserver_batcher = 4\n", updated.text);
        assert_eq!(batchings(Some(&partitioned), &after).unwrap()[0].instances, 4);
        let inline = updated.text.replace("server_batcher = 1", "server_batcher = { instances = 1, partitions = 3 }");
        assert_eq!(batchings(Some(&inline), &after).unwrap()[0].instances, 3);
        // No file, or none recorded: no batching.
        assert!(batchings(None, &after).unwrap().is_empty());
        assert!(batchings(Some("[components]\nserver = 1\n"), &after).unwrap().is_empty());
        // A rename of the batcher or of its channel follows it.
        let renamed = [
            Change::RenameComponent { from: "server_batcher".into(), to: "front".into() },
            Change::RenameRelation { from: "req_batch".into(), to: "batch".into() },
        ];
        let renamed = update(Some(&updated.text), &after, &renamed).unwrap();
        assert!(renamed.text.ends_with("[batches]\nfront = { channel = \"batch\", size = 8 }\n"), "{}", renamed.text);
        assert_eq!(renamed.notes[1], "`req_batch` renamed to `batch` in [batches]");
    }

    #[test]
    fn bad_batches_entries_are_errors_naming_them() {
        let analysis = crate::analyze(SERVER);
        let result = crate::rewrite::batch(&analysis, "server", 8, crate::rewrite::Delivery::Every).unwrap();
        let after = program(&result.new_text);
        let file = |entry: &str| format!("[components]\nserver = 1\nserver_batcher = 1\n[batches]\n{entry}\n");
        let cases = [
            ("server_batcher = 8", "[batches] `server_batcher`: not a table"),
            ("nope = { channel = \"req_batch\", size = 8 }", "[batches] `nope`: not a component of the program"),
            ("server_batcher = { size = 8 }", "[batches] `server_batcher`: no `channel` string"),
            ("server_batcher = { channel = \"rep\", size = 8 }", "`rep` is not a channel of the program"),
            ("server_batcher = { channel = \"req_batch\" }", "`size` must be an integer of 2 or more"),
            ("server_batcher = { channel = \"req_batch\", size = 1 }", "`size` must be an integer of 2 or more"),
            ("server_batcher = { channel = \"req_batch\", size = 8, fill = 3 }", "unknown key `fill`"),
        ];
        for (entry, want) in cases {
            let e = batchings(Some(&file(entry)), &after).unwrap_err();
            assert!(e.contains(want), "{entry}: {e}");
            assert!(e.contains("expected `"), "{entry}: says the form: {e}");
        }
        assert_eq!(batchings(Some("batches = 3\n"), &after).unwrap_err(), "`batches` must be a table");
    }

    #[test]
    fn bad_files_are_errors_and_left_alone() {
        let p = decoupled();
        let add = [Change::Add { component: "back_rep".into() }];
        assert!(update(Some("[components\n"), &p, &add).unwrap_err().starts_with("not valid TOML"));
        assert!(update(Some("components = 3\n"), &p, &add).unwrap_err().contains("not a table"));
        assert!(update(Some("[components]\n"), &p, &[Change::Add { component: "nope".into() }]).is_err());
        // Counts the runtime would refuse are not copied: the new part falls back to one node.
        let odd = update(Some("[components]\nback = -2\n"), &p, &add).unwrap();
        assert!(odd.text.ends_with("back_rep = 1\n"), "{}", odd.text);
    }
}
