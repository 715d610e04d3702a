//! Property test: random and mutated programs through parsing, incremental re-parsing, analysis and
//! formatting. Nothing may panic; formatting is idempotent and keeps the program's meaning (the same
//! diagnostics); an incremental re-parse equals a fresh one, and so does a re-analysis that reuses
//! unchanged components.
//!
//! CI runs a few thousand cases; by hand: `COMPART_FUZZ_CASES=100000 cargo test --release -p compart-analysis --test fuzz`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use compart_analysis::{analyze, fmt, Analyzer, SyntaxTree, TextRange};

/// splitmix64: tiny, seedable, good enough to drive mutations deterministically.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn token(&mut self) -> &'static str {
        TOKENS[self.below(TOKENS.len())]
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const TOKENS: &[&str] = &[
    "component ",
    "c",
    "{",
    "}",
    "(",
    ")",
    ",",
    ".",
    ":-",
    ":+",
    ":~",
    "@",
    "!",
    "=",
    "==",
    "!=",
    "<",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "++",
    "&&",
    "||",
    "_",
    "self",
    "true",
    "false",
    "0",
    "42",
    "99999999999999999999",
    "\"s\"",
    "\"\\\"",
    "x",
    "y",
    "p",
    "input ",
    "output ",
    "table ",
    "channel ",
    "scratch ",
    "delete ",
    "invariant ",
    "key(",
    "partitioned by ",
    "count(",
    "max(",
    "min(",
    "sum(",
    "choose(",
    "hash(",
    "abs(",
    "str(",
    "nodes(",
    ": int",
    ": string",
    ": addr",
    ": bool",
    "// c\n",
    "/* b */",
    "\n",
    " ",
    "é",
    "𝄞",
    "\t",
    "\0",
];

fn seeds() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut seeds = Vec::new();
    for dir in ["examples", "tests/diagnostics"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            if path.extension().is_some_and(|e| e == "ded") {
                seeds.push(std::fs::read_to_string(path).unwrap());
            }
        }
    }
    assert!(seeds.len() >= 10, "fuzz seeds missing");
    seeds
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn random_range(rng: &mut Rng, text: &str) -> (usize, usize) {
    let a = floor_boundary(text, rng.below(text.len() + 1));
    let b = floor_boundary(text, a + rng.below(24));
    (a, b)
}

fn mutate(rng: &mut Rng, seeds: &[String]) -> String {
    let mut text = rng.pick(seeds).clone();
    for _ in 0..1 + rng.below(6) {
        let (a, b) = random_range(rng, &text);
        match rng.below(6) {
            0 => text.replace_range(a..b, ""),
            1 => text.insert_str(a, rng.token()),
            2 => {
                let other = rng.pick(seeds);
                let (c, d) = random_range(rng, other);
                text.insert_str(a, &other[c..d]);
            }
            3 => text.truncate(a),
            4 => {
                let slice = text[a..b].to_string();
                text.insert_str(b, &slice);
            }
            _ => text.replace_range(a..b, rng.token()),
        }
    }
    text
}

/// A program built from tokens alone: mostly garbage, sometimes deep nesting.
fn token_soup(rng: &mut Rng) -> String {
    let mut text = String::new();
    for _ in 0..rng.below(80) {
        text.push_str(rng.token());
    }
    if rng.below(10) == 0 {
        text.push_str(&"(".repeat(rng.below(3000)));
    }
    text
}

fn codes(text: &str) -> Vec<&'static str> {
    let mut codes: Vec<_> = analyze(text).diagnostics.iter().map(|d| d.code.as_str()).collect();
    codes.sort();
    codes
}

fn one_case(rng: &mut Rng, seeds: &[String]) -> Result<(), String> {
    let text = if rng.below(4) == 0 { token_soup(rng) } else { mutate(rng, seeds) };
    let run = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
        let analysis = analyze(&text);
        for d in &analysis.diagnostics {
            if d.range.end as usize > text.len() || d.range.start > d.range.end {
                return Err(format!("diagnostic range {:?} outside the text", d.range));
            }
        }
        // An edit applied incrementally parses like the edited text from scratch.
        let (a, b) = random_range(rng, &text);
        let insert = rng.token();
        let edited = analysis.syntax.edit(TextRange::new(a, b), insert);
        let fresh = SyntaxTree::parse(edited.text.clone());
        if edited.root().to_sexp() != fresh.root().to_sexp() {
            return Err("incremental re-parse differs from a fresh parse".into());
        }
        // Re-analysis that reuses unchanged components must equal a fresh analysis.
        let mut analyzer = Analyzer::default();
        analyzer.analyze(analysis.syntax.clone());
        let reused = analyzer.analyze(edited.clone());
        let fresh = analyze(&edited.text);
        if reused.diagnostics != fresh.diagnostics {
            return Err(format!(
                "cached re-analysis differs:\n{:?}\n{:?}\nedited: {:?}",
                reused.diagnostics, fresh.diagnostics, edited.text
            ));
        }
        let json = |a: &compart_analysis::Analysis| serde_json::to_string(&a.program).unwrap();
        if json(&reused) != json(&fresh) {
            return Err(format!("cached re-analysis built another program for {:?}", edited.text));
        }
        if let Ok(formatted) = fmt::format(&text) {
            let again =
                fmt::format(&formatted).map_err(|e| format!("formatted output does not parse: {e:?}\n{formatted}"))?;
            if again != formatted {
                return Err(format!("formatting is not idempotent:\n{formatted}\n---\n{again}"));
            }
            if codes(&formatted) != codes(&text) {
                return Err(format!(
                    "formatting changed the diagnostics: {:?} -> {:?}\n{formatted}",
                    codes(&text),
                    codes(&formatted)
                ));
            }
        }
        Ok(())
    }));
    match run {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{e}\ninput:\n{text:?}")),
        Err(_) => Err(format!("panic on input:\n{text:?}")),
    }
}

#[test]
fn random_and_mutated_programs() {
    let cases: usize = std::env::var("COMPART_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let seed: u64 = std::env::var("COMPART_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0xC0FFEE);
    let seeds = seeds();
    let mut rng = Rng(seed);
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..cases {
        if let Err(failure) = one_case(&mut rng, &seeds) {
            let _ = std::panic::take_hook();
            panic!("case {i} (seed {seed}) failed: {failure}");
        }
    }
    let _ = std::panic::take_hook();
    eprintln!("{cases} cases, no failure");
}
