//! Source positions. Everything in the analysis speaks byte offsets; editors convert at their edge.

use serde::Serialize;

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
}
