//! The editor classifies after every keystroke: broken and half-typed programs must never make
//! the scaling analysis, the rewrites or the cost model panic.

use compart_analysis::{analyze, optimize, rewrite, scaling};

fn examples() -> Vec<String> {
    ["voting", "two_phase_commit", "paxos", "kvs"]
        .iter()
        .map(|f| std::fs::read_to_string(format!("{}/../examples/{f}.ded", env!("CARGO_MANIFEST_DIR"))).unwrap())
        .collect()
}

fn exercise(text: &str) {
    let analysis = analyze(text);
    let report = scaling::classify(&analysis.program);
    let _ = scaling::render(&analysis.program, &report);
    let _ = optimize::loads(&analysis.program, &optimize::Options::default());
    if let Some(c) = analysis.program.components.first() {
        let name = c.name.clone();
        let _ = rewrite::partition(&analysis, &name, None);
        if let Ok(rules) = rewrite::select_rules(&analysis, &name, &["1"]) {
            let _ = rewrite::decouple(&analysis, &name, &rules, "fresh_part");
        }
    }
    // Thrifty broadcast traces columns through the program: every component, every broadcast.
    for c in analysis.program.component_ids() {
        let _ = rewrite::thrifty(&analysis, &analysis.program.component(c).name, None);
        for rule in rewrite::broadcasts(&analysis, c) {
            let _ = rewrite::thrifty_rule(&analysis, rule);
        }
    }
}

#[test]
fn truncated_programs() {
    for text in examples() {
        for cut in (0..text.len()).step_by(401).filter(|&c| text.is_char_boundary(c)) {
            exercise(&text[..cut]);
        }
    }
}

#[test]
fn programs_missing_one_line() {
    for text in examples() {
        let lines: Vec<&str> = text.lines().collect();
        for skip in (0..lines.len()).step_by(13) {
            let mutated: Vec<&str> = lines.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, l)| *l).collect();
            exercise(&mutated.join("\n"));
        }
    }
}

#[test]
fn arity_and_name_errors() {
    exercise(
        "component c {\n channel a(x: int)\n b(x, y) :- a(x).\n c2(count(z)) :- a(x, z).\n d(x) :- nope(x), !a().\n}\n",
    );
    exercise("component c partitioned by a.nope {\n channel a(x: int) key(x)\n a2@d(x) :~ a(x).\n}\n");
}
