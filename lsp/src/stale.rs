//! The last good analysis of each component, kept through errors.
//!
//! While a component has errors (typically: a rule being typed), its scaling hints come from the
//! last version of the document in which it had none, so they do not vanish at every keystroke.
//! Such a stale result is computed on the old text and moved to the current one through the edits
//! made since ([`Edit`]); an item whose text an edit touched is dropped, and every item is checked
//! to still stand on the same text before it is shown, so a stale result never points at the
//! wrong text. Components without errors are analysed from the current text as usual, and nothing
//! stale ever feeds a rewrite (rewrite actions on a broken component are disabled instead, see
//! handlers/scaling.rs).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use compart_analysis::model::ComponentId;
use compart_analysis::{Analysis, Severity, TextRange};

/// One replacement in byte offsets: `start..old_end` of the text before it became
/// `start..new_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edit {
    pub start: u32,
    pub old_end: u32,
    pub new_end: u32,
}

impl Edit {
    pub fn new(range: TextRange, new_len: usize) -> Edit {
        Edit { start: range.start, old_end: range.end, new_end: range.start + new_len as u32 }
    }

    /// Where `range` is after this edit, or `None` if the edit changed text inside it (an edit
    /// that only touches one of its ends, like typing right after a rule, leaves it whole).
    fn map(self, range: TextRange) -> Option<TextRange> {
        if self.old_end <= range.start {
            let shift = |offset: u32| (i64::from(offset) + i64::from(self.new_end) - i64::from(self.old_end)) as u32;
            Some(TextRange { start: shift(range.start), end: shift(range.end) })
        } else if range.end <= self.start {
            Some(range)
        } else {
            None
        }
    }
}

/// Where `range` of an old text is after `edits` (in order), if none changed text inside it.
pub fn map_range(range: TextRange, edits: &[Edit]) -> Option<TextRange> {
    edits.iter().try_fold(range, |range, edit| edit.map(range))
}

/// Whether the component has no error: no error diagnostic starts inside it.
pub fn is_clean(analysis: &Analysis, id: ComponentId) -> bool {
    let range = analysis.program.component(id).range;
    !analysis
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error && range.start <= d.range.start && d.range.start <= range.end)
}

/// A scaling hint in byte offsets of the text it was computed on: shown at `at`, about the text at
/// `anchor` (a rule, or a component's name and placement), which must still be there to show it.
#[derive(Clone, Debug)]
pub struct ScalingHint {
    pub at: u32,
    pub anchor: TextRange,
    pub label: String,
    pub tooltip: String,
}

/// The last version in which a component that has errors now had none.
pub struct StaleComponent {
    pub name: String,
    /// The analysis of that version.
    pub analysis: Arc<Analysis>,
    /// The edits made since, oldest first.
    pub edits: Vec<Edit>,
    /// Its hints on that version's text, computed on first use.
    pub hints: Arc<OnceLock<Vec<ScalingHint>>>,
}

impl StaleComponent {
    /// `hint` moved to `current` text, if it still stands on the text it was computed for.
    pub fn map_hint(&self, hint: &ScalingHint, current: &str) -> Option<ScalingHint> {
        let anchor = map_range(hint.anchor, &self.edits)?;
        let then = self.analysis.text().get(hint.anchor.as_range())?;
        // The hint keeps its place relative to its text (typing right after a rule must not push
        // the rule's hint along).
        let at = anchor.start + hint.at.checked_sub(hint.anchor.start)?;
        (current.get(anchor.as_range()) == Some(then)).then(|| ScalingHint { at, anchor, ..hint.clone() })
    }
}

/// Per document: for each component, its last clean version, and the first component's name in
/// the last version without any error (where the Run and Simulate lenses stand).
#[derive(Default)]
pub struct LastGood {
    components: HashMap<String, StaleComponent>,
    lens: Option<StaleAnchor>,
}

/// A range of an old text moved through the edits since, with the text it must still cover.
struct StaleAnchor {
    range: TextRange,
    text: String,
}

/// What a snapshot keeps of [`LastGood`]: the stale components (those with errors now), and where
/// the lenses stand.
#[derive(Clone, Default)]
pub struct Stale {
    pub components: Arc<Vec<StaleComponent>>,
    pub lens: Option<TextRange>,
}

/// Stop mapping a stale component through edits after this many (the component has been broken
/// for a long time; its old results are not worth the mapping any more).
const MAX_EDITS: usize = 10_000;

impl LastGood {
    /// Record a new version: `edits` led from the previous one to `analysis`.
    pub fn update(&mut self, analysis: &Arc<Analysis>, edits: &[Edit]) -> Stale {
        let program = &analysis.program;
        let clean: Vec<bool> = program.component_ids().map(|id| is_clean(analysis, id)).collect();
        for entry in self.components.values_mut() {
            entry.edits.extend_from_slice(edits);
        }
        self.components.retain(|_, entry| entry.edits.len() <= MAX_EDITS);
        for id in program.component_ids().filter(|id| clean[id.index()]) {
            let name = program.component(id).name.clone();
            let entry = StaleComponent {
                name: name.clone(),
                analysis: analysis.clone(),
                edits: Vec::new(),
                hints: Default::default(),
            };
            self.components.insert(name, entry);
        }
        if !analysis.has_errors() {
            // Every component is current: forget those that no longer exist.
            self.components.retain(|name, _| program.component_by_name(name).is_some());
        }
        self.lens = match program.components.first() {
            Some(first) if !analysis.has_errors() => {
                Some(StaleAnchor { range: first.name_range, text: first.name.clone() })
            }
            _ => self.lens.take().and_then(|anchor| {
                let range = map_range(anchor.range, edits)?;
                (analysis.text().get(range.as_range()) == Some(anchor.text.as_str()))
                    .then_some(StaleAnchor { range, ..anchor })
            }),
        };
        let stale = self
            .components
            .values()
            .filter(|entry| program.component_by_name(&entry.name).is_none_or(|id| !clean[id.index()]))
            .map(|entry| StaleComponent {
                name: entry.name.clone(),
                analysis: entry.analysis.clone(),
                edits: entry.edits.clone(),
                hints: entry.hints.clone(),
            })
            .collect();
        Stale { components: Arc::new(stale), lens: self.lens.as_ref().map(|anchor| anchor.range) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u32, end: u32) -> TextRange {
        TextRange { start, end }
    }

    #[test]
    fn ranges_move_with_edits_around_them_and_die_with_edits_inside() {
        let insert = |at: u32, len: u32| Edit { start: at, old_end: at, new_end: at + len };
        // Before, after, touching either end, inside.
        assert_eq!(map_range(r(10, 20), &[insert(30, 5)]), Some(r(10, 20)));
        assert_eq!(map_range(r(10, 20), &[insert(2, 5)]), Some(r(15, 25)));
        assert_eq!(map_range(r(10, 20), &[insert(20, 5)]), Some(r(10, 20)));
        assert_eq!(map_range(r(10, 20), &[insert(10, 5)]), Some(r(15, 25)));
        assert_eq!(map_range(r(10, 20), &[insert(15, 1)]), None);
        // A deletion overlapping the range, one before it, then an insertion: in order.
        assert_eq!(map_range(r(10, 20), &[Edit { start: 18, old_end: 25, new_end: 18 }]), None);
        let edits = [Edit { start: 0, old_end: 4, new_end: 0 }, insert(0, 2)];
        assert_eq!(map_range(r(10, 20), &edits), Some(r(8, 18)));
        // An empty range inside a deletion is gone.
        assert_eq!(map_range(r(12, 12), &[Edit { start: 10, old_end: 14, new_end: 10 }]), None);
    }

    #[test]
    fn a_broken_component_keeps_its_last_clean_version_and_the_others_are_current() {
        let text = "component a {\n    input i(x: int)\n    output o(x: int)\n    o(x) :- i(x).\n}\n\
                    component b {\n    input j(x: int)\n    output p(x: int)\n    p(x) :- j(x).\n}\n";
        let mut last_good = LastGood::default();
        let first = Arc::new(compart_analysis::analyze(text));
        let stale = last_good.update(&first, &[]);
        assert!(stale.components.is_empty());
        assert_eq!(stale.lens, Some(first.program.components[0].name_range));
        // `bar(` typed into `b`: `b` is stale (the first version), `a` is current.
        let at = text.find("    p(x)").unwrap();
        let broken = format!("{}bar(\n{}", &text[..at], &text[at..]);
        let edit = Edit::new(TextRange::empty(at), "bar(\n".len());
        let second = Arc::new(compart_analysis::analyze(&broken));
        assert!(second.has_errors());
        let stale = last_good.update(&second, &[edit]);
        let names: Vec<_> = stale.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["b"]);
        assert!(Arc::ptr_eq(&stale.components[0].analysis, &first));
        assert_eq!(stale.components[0].edits, [edit]);
        // The lenses stay on `a`'s name, which no edit touched.
        assert_eq!(stale.lens, Some(second.program.components[0].name_range));
        // A hint about `b`'s rule moves past the insertion and still stands on the same text.
        let rule = first.program.rules[1].range;
        let hint = ScalingHint { at: rule.end, anchor: rule, label: "⟨parallel⟩".into(), tooltip: String::new() };
        let moved = stale.components[0].map_hint(&hint, &broken).unwrap();
        assert_eq!(&broken[moved.anchor.as_range()], "p(x) :- j(x).");
        // Claimed to stand on text that differs now: dropped.
        let wrong = ScalingHint { anchor: first.program.rules[0].range, ..hint };
        let mut lying = stale.components[0].map_hint(&wrong, &broken);
        assert!(lying.is_some(), "rule 0 is before the edit and unchanged");
        let replaced = broken.replace("o(x) :- i(x).", "o(x) :- i(y).");
        lying = stale.components[0].map_hint(&wrong, &replaced);
        assert!(lying.is_none());
    }
}
