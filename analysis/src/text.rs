//! Source positions. Everything in the analysis speaks byte offsets; editors convert at their edge.

use serde::Serialize;

use crate::diagnostics::TextEdit;

/// A half-open byte range `start..end` in one source file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
pub struct TextRange {
    pub start: u32,
    pub end: u32,
}

impl TextRange {
    pub fn new(start: usize, end: usize) -> Self {
        TextRange { start: start as u32, end: end as u32 }
    }
    pub fn empty(at: usize) -> Self {
        TextRange::new(at, at)
    }
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
    pub fn contains(self, offset: usize) -> bool {
        self.start as usize <= offset && offset <= self.end as usize
    }
    pub fn cover(self, other: TextRange) -> TextRange {
        TextRange { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
    pub fn as_range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl std::fmt::Debug for TextRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// A zero-based line and a column counted in the unit the caller asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LineCol {
    pub line: u32,
    pub col: u32,
}

/// Maps byte offsets to lines and columns (UTF-8 bytes, chars or UTF-16 code units).
///
/// Lines end at `\n`, `\r\n` or a lone `\r`, and nothing else: these are the LSP's line breaks,
/// so editors and this index agree on line numbers whatever else the text holds (U+2028, U+0085,
/// form feeds...).
#[derive(Clone, Debug)]
pub struct LineIndex {
    line_starts: Vec<u32>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let bytes = text.as_bytes();
        let mut line_starts = vec![0];
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\n' => line_starts.push(i as u32 + 1),
                b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                    i += 1;
                    line_starts.push(i as u32 + 1);
                }
                b'\r' => line_starts.push(i as u32 + 1),
                _ => {}
            }
            i += 1;
        }
        LineIndex { line_starts }
    }

    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    pub fn line_start(&self, line: usize) -> Option<usize> {
        self.line_starts.get(line).map(|&s| s as usize)
    }

    /// Where a line's text ends, before its line break.
    pub fn line_end(&self, text: &str, line: usize) -> usize {
        match self.line_start(line + 1) {
            None => text.len(),
            Some(next) if text.as_bytes()[..next].ends_with(b"\r\n") => next - 2,
            Some(next) => next - 1,
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&(offset as u32)) {
            Ok(line) => line,
            Err(next) => next - 1,
        }
    }

    /// Line and column in UTF-8 bytes.
    pub fn line_col(&self, offset: usize) -> LineCol {
        let line = self.line_of(offset);
        LineCol { line: line as u32, col: (offset - self.line_starts[line] as usize) as u32 }
    }

    /// Line and column in UTF-16 code units (the LSP default). An offset inside a line break is
    /// the end of its line.
    pub fn line_col_utf16(&self, text: &str, offset: usize) -> LineCol {
        let offset = clamp_to_char_boundary(text, offset);
        let line = self.line_of(offset);
        let start = self.line_starts[line] as usize;
        let offset = offset.min(self.line_end(text, line));
        let col = text[start..offset].chars().map(char::len_utf16).sum::<usize>();
        LineCol { line: line as u32, col: col as u32 }
    }

    /// The byte offset of a UTF-16 line/column, clamped into the text (positions past a line's end
    /// land on its end, before the line break; positions past the last line on the text's end).
    pub fn offset_utf16(&self, text: &str, pos: LineCol) -> usize {
        let Some(start) = self.line_start(pos.line as usize) else {
            return text.len();
        };
        let end = self.line_end(text, pos.line as usize);
        let mut units = 0u32;
        for (i, ch) in text[start..end].char_indices() {
            if units >= pos.col {
                return start + i;
            }
            units += ch.len_utf16() as u32;
        }
        end
    }
}

/// The edits that turn `old` into `new`, one per changed region: a line diff whose hunks are
/// narrowed to the characters that differ. An editor applying them keeps its cursor, folds and
/// marks on everything else, which replacing the whole text loses. Edits are in order, do not
/// overlap, start and end on character boundaries and never between a CR and its LF (an LSP
/// position cannot point there).
pub fn edits_between(old: &str, new: &str) -> Vec<TextEdit> {
    let diff = similar::TextDiff::from_lines(old, new);
    let starts = |lines: &[&str]| -> Vec<usize> {
        let mut at = vec![0];
        for line in lines {
            at.push(at[at.len() - 1] + line.len());
        }
        at
    };
    let (old_at, new_at) = (starts(diff.old_slices()), starts(diff.new_slices()));
    // Adjacent deletions and insertions are one region.
    let mut regions: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = Vec::new();
    for op in diff.ops() {
        if op.tag() == similar::DiffTag::Equal {
            continue;
        }
        let (o, n) = (op.old_range(), op.new_range());
        match regions.last_mut() {
            Some((lo, ln)) if lo.end == o.start && ln.end == n.start => {
                lo.end = o.end;
                ln.end = n.end;
            }
            _ => regions.push((o, n)),
        }
    }
    regions
        .into_iter()
        .map(|(o, n)| narrow(old, new, old_at[o.start]..old_at[o.end], new_at[n.start]..new_at[n.end]))
        .collect()
}

/// The edit replacing `old[o]` by `new[n]`, without their common first and last characters.
fn narrow(old: &str, new: &str, o: std::ops::Range<usize>, n: std::ops::Range<usize>) -> TextEdit {
    let (a, b) = (&old[o.clone()], &new[n.clone()]);
    let mut prefix: usize = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).map(|(x, _)| x.len_utf8()).sum();
    let max_suffix = a.len().min(b.len()) - prefix;
    let mut suffix: usize = a[prefix..]
        .chars()
        .rev()
        .zip(b[prefix..].chars().rev())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.len_utf8())
        .scan(0, |total, len| {
            *total += len;
            (*total <= max_suffix).then_some(len)
        })
        .sum();
    let splits_crlf =
        |at: usize| at > 0 && old.as_bytes().get(at - 1) == Some(&b'\r') && old.as_bytes().get(at) == Some(&b'\n');
    if splits_crlf(o.start + prefix) {
        prefix -= 1;
    }
    if splits_crlf(o.end - suffix) {
        suffix -= 1;
    }
    TextEdit {
        range: TextRange::new(o.start + prefix, o.end - suffix),
        new_text: b[prefix..b.len() - suffix].to_string(),
    }
}

fn clamp_to_char_boundary(text: &str, mut offset: usize) -> usize {
    offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_round_trip() {
        let text = "ab\nx𝄞y\n";
        let index = LineIndex::new(text);
        let y = text.find('y').unwrap();
        let pos = index.line_col_utf16(text, y);
        assert_eq!(pos, LineCol { line: 1, col: 3 });
        assert_eq!(index.offset_utf16(text, pos), y);
        assert_eq!(index.offset_utf16(text, LineCol { line: 0, col: 99 }), 2);
        assert_eq!(index.offset_utf16(text, LineCol { line: 9, col: 0 }), text.len());
    }

    #[test]
    fn only_lf_crlf_and_cr_break_lines() {
        // U+2028, U+2029, U+0085, VT and FF are ordinary characters (one UTF-16 unit each).
        let text = "a\u{2028}b\u{2029}c\u{85}d\u{b}e\u{c}f\r\ng\rh\ni\r";
        let index = LineIndex::new(text);
        assert_eq!(index.line_count(), 5);
        let at = |s: &str| text.find(s).unwrap();
        assert_eq!(index.line_col_utf16(text, at("f")), LineCol { line: 0, col: 10 });
        assert_eq!(index.line_col_utf16(text, at("g")), LineCol { line: 1, col: 0 });
        assert_eq!(index.line_col_utf16(text, at("h")), LineCol { line: 2, col: 0 });
        assert_eq!(index.line_col_utf16(text, at("i")), LineCol { line: 3, col: 0 });
        assert_eq!(index.line_col_utf16(text, text.len()), LineCol { line: 4, col: 0 });
        // Between CR and LF is still the end of the line; a column past the end stops before CRLF.
        assert_eq!(index.line_col_utf16(text, at("\n")), LineCol { line: 0, col: 11 });
        assert_eq!(index.offset_utf16(text, LineCol { line: 0, col: 99 }), at("\r"));
        assert_eq!(index.offset_utf16(text, LineCol { line: 2, col: 99 }), at("h") + 1);
        assert_eq!(index.line_end(text, 3), at("i") + 1);
    }

    #[test]
    fn line_col_bytes() {
        let index = LineIndex::new("a\nbc");
        assert_eq!(index.line_col(3), LineCol { line: 1, col: 1 });
        assert_eq!(index.line_col(0), LineCol { line: 0, col: 0 });
    }

    /// Applies non-overlapping edits in order.
    fn apply(text: &str, edits: &[TextEdit]) -> String {
        let mut out = String::new();
        let mut at = 0;
        for e in edits {
            assert!(e.range.start as usize >= at, "{edits:?}");
            out.push_str(&text[at..e.range.start as usize]);
            out.push_str(&e.new_text);
            at = e.range.end as usize;
        }
        out + &text[at..]
    }

    #[test]
    fn edits_between_cover_only_what_changed() {
        let old = "a {\n  x(1).\n  y(2).\n}\nb {\n}\n";
        let new = "a {\n  x(1).\n  y(3).\n}\nb {\n  z.\n}\nc {}\n";
        let edits = edits_between(old, new);
        assert_eq!(apply(old, &edits), new);
        let shown: Vec<(&str, &str)> = edits.iter().map(|e| (&old[e.range.as_range()], e.new_text.as_str())).collect();
        assert_eq!(shown, [("2", "3"), ("", "  z.\n"), ("", "c {}\n")]);
        assert!(edits_between(old, old).is_empty());
        assert_eq!(apply("", &edits_between("", new)), new);
        assert_eq!(apply(old, &edits_between(old, "")), "");
    }

    #[test]
    fn edits_between_respect_characters_and_crlf() {
        for (old, new) in [
            ("x𝄞y\n", "x𝄢y\n"),
            ("é\n", "è\n"),
            ("a\r\nb\r\n", "a\rb\r\n"),
            ("a\r\nb\r\n", "a\r\r\nb\r\n"),
            ("a\r\n", "a\n"),
            ("aaa", "aa"),
            ("ab\nab\n", "ab\n"),
            ("no newline", "no newline at the end"),
        ] {
            let edits = edits_between(old, new);
            assert_eq!(apply(old, &edits), new, "{old:?} -> {new:?}: {edits:?}");
            for e in &edits {
                let (s, t) = (e.range.start as usize, e.range.end as usize);
                assert!(old.is_char_boundary(s) && old.is_char_boundary(t), "{old:?}: {edits:?}");
                for at in [s, t] {
                    assert!(
                        !(at > 0 && old[..at].ends_with('\r') && old[at..].starts_with('\n')),
                        "{old:?}: {edits:?}"
                    );
                }
            }
        }
    }
}
