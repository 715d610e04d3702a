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
    let edits = diff_edits(old, new);
    // The edits must give exactly `new`; should the diff ever disagree, one narrowed edit does.
    if apply(old, &edits).as_deref() == Some(new) {
        edits
    } else {
        vec![narrow(old, new, 0..old.len(), 0..new.len())]
    }
}

fn diff_edits(old: &str, new: &str) -> Vec<TextEdit> {
    let diff = similar::TextDiff::from_lines(old, new);
    // Positions come from walking the operations' lengths: the indices similar reports after
    // compacting a diff can be off (a deletion before an equal run), their lengths are not.
    let (old_lines, new_lines) = (diff.old_slices(), diff.new_slices());
    let (mut o_line, mut n_line, mut o_at, mut n_at) = (0, 0, 0, 0);
    let mut regions: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = Vec::new();
    for op in diff.ops() {
        let (_, o, n) = op.as_tag_tuple();
        let o_len: usize = old_lines[o_line..o_line + o.len()].iter().map(|l| l.len()).sum();
        let n_len: usize = new_lines[n_line..n_line + n.len()].iter().map(|l| l.len()).sum();
        if op.tag() != similar::DiffTag::Equal {
            // Adjacent deletions and insertions are one region.
            match regions.last_mut() {
                Some((lo, ln)) if lo.end == o_at && ln.end == n_at => {
                    lo.end += o_len;
                    ln.end += n_len;
                }
                _ => regions.push((o_at..o_at + o_len, n_at..n_at + n_len)),
            }
        }
        (o_line, n_line, o_at, n_at) = (o_line + o.len(), n_line + n.len(), o_at + o_len, n_at + n_len);
    }
    regions.into_iter().map(|(o, n)| narrow(old, new, o, n)).collect()
}

/// `text` with ordered, non-overlapping `edits` applied; `None` if they are not.
fn apply(text: &str, edits: &[TextEdit]) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for e in edits {
        let (start, end) = (e.range.start as usize, e.range.end as usize);
        out.push_str(text.get(at..start)?);
        out.push_str(&e.new_text);
        at = end;
    }
    out.push_str(text.get(at..)?);
    Some(out)
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
    // Lines of the diff keep CRLF together: only the narrowing can split one.
    if prefix > 0 && splits_crlf(o.start + prefix) {
        prefix -= 1;
    }
    if suffix > 0 && splits_crlf(o.end - suffix) {
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

    #[test]
    fn edits_between_cover_only_what_changed() {
        let old = "a {\n  x(1).\n  y(2).\n}\nb {\n}\n";
        let new = "a {\n  x(1).\n  y(3).\n}\nb {\n  z.\n}\nc {}\n";
        let edits = edits_between(old, new);
        assert_eq!(apply(old, &edits).unwrap(), new);
        let shown: Vec<(&str, &str)> = edits.iter().map(|e| (&old[e.range.as_range()], e.new_text.as_str())).collect();
        assert_eq!(shown, [("2", "3"), ("", "  z.\n"), ("", "c {}\n")]);
        assert!(edits_between(old, old).is_empty());
        assert_eq!(apply("", &edits_between("", new)).unwrap(), new);
        assert_eq!(apply(old, &edits_between(old, "")).unwrap(), "");
    }

    #[test]
    fn edits_between_random_texts() {
        // Small alphabet with line breaks of every kind and a multi-byte character: many common
        // lines, prefixes and suffixes to narrow.
        let alphabet = ["a", "b", "\n", "\r", "\r\n", "𝄞", "é"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..2000 {
            let mut text = || (0..next(24)).map(|_| alphabet[next(alphabet.len())]).collect::<String>();
            let (old, new) = (text(), text());
            // The diff itself, not the fallback, gives `new`.
            let edits = diff_edits(&old, &new);
            assert_eq!(apply(&old, &edits).as_deref(), Some(new.as_str()), "{old:?} -> {new:?}: {edits:?}");
            for e in &edits {
                for at in [e.range.start as usize, e.range.end as usize] {
                    assert!(old.is_char_boundary(at), "{old:?}: {edits:?}");
                    assert!(!(old[..at].ends_with('\r') && old[at..].starts_with('\n')), "{old:?}: {edits:?}");
                }
            }
        }
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
            let edits = diff_edits(old, new);
            assert_eq!(apply(old, &edits).as_deref(), Some(new), "{old:?} -> {new:?}: {edits:?}");
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
