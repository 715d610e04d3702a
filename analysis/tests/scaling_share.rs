//! Shared proxies (`rewrite::share`): two stateless parts merged into one component, and every
//! precondition's refusal, each on a variant of one program that breaks just that precondition.

mod common;
use common::line;
use compart_analysis::{analyze, deployment, rewrite};

/// A coordinator forwarding writes and reads to two stateless broadcasters, as two decouplings
/// of its broadcasts leave it (each part pairs with its coordinator node by `partner`).
fn fanout() -> String {
    std::fs::read_to_string(format!("{}/../tests/fixtures/fanout_proxies.ded", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn share(text: &str, a: &str, b: &str, into: &str) -> String {
    match rewrite::share(&analyze(text), a, b, into) {
        Ok(result) => format!("{}\n---\n{}", result.explanation.join("\n"), result.new_text),
        Err(refusal) => format!("refused at {}: {}", line(text, refusal.range), refusal.reason),
    }
}

#[test]
fn fanout_proxies_share_one_component() {
    let text = fanout();
    let out = share(&text, "put_proxy", "get_proxy", "proxy");
    assert!(!out.starts_with("refused"), "{out}");
    let rewritten = out.split_once("\n---\n").unwrap().1;
    let analysis = analyze(rewritten);
    let program = &analysis.program;
    assert!(program.component_by_name("put_proxy").is_none() && program.component_by_name("get_proxy").is_none());
    let proxy = program.component_by_name("proxy").expect("the merged component");
    // Both channels are the merged component's, and every send to the parts now goes to it.
    for channel in ["put_fwd", "get_fwd"] {
        let id = program.relation_by_name(channel).unwrap();
        assert_eq!(program.relation(id).component, Some(proxy), "{channel}");
    }
    assert!(!rewritten.contains("nodes(\"put_proxy\"") && !rewritten.contains("nodes(\"get_proxy\""));
    assert_eq!(rewritten.matches("nodes(\"proxy\", d)").count(), 2);
    assert_eq!(program.partnered_with(proxy), program.component_by_name("coordinator"));
    insta::assert_snapshot!(out);
}

/// The deployment gets the merged component with the most nodes and instances either part had,
/// and loses the parts.
#[test]
fn deployment_replaces_the_parts_with_the_shared_component() {
    let original = analyze(&fanout());
    let result = rewrite::share(&original, "put_proxy", "get_proxy", "proxy").unwrap();
    let rewritten = analyze(&result.new_text);
    let changes = deployment::rewrite_changes(&original.program, &rewritten.program);
    assert_eq!(
        changes,
        vec![deployment::Change::Share { parts: vec!["put_proxy".into(), "get_proxy".into()], into: "proxy".into() }]
    );
    let file = "[components]\ncoordinator = 3\nput_proxy = 3\nget_proxy = 3\nreplica = 3\n\n[partitions]\nput_proxy = 2\nget_proxy = 4\n";
    let updated = deployment::update(Some(file), &rewritten.program, &changes).unwrap();
    assert_eq!(updated.text, "[components]\ncoordinator = 3\nreplica = 3\nproxy = 3\n\n[partitions]\nproxy = 4\n");
    assert_eq!(updated.notes, ["[components] proxy = 3, replacing put_proxy and get_proxy; [partitions] proxy = 4"]);
}

/// Two partitioned parts: the shared component routes each part's channel by that part's key.
#[test]
fn partitioned_parts_keep_their_keys() {
    let text = fanout()
        .replace("component put_proxy {", "component put_proxy partitioned by put_fwd.v {")
        .replace("component get_proxy {", "component get_proxy partitioned by get_fwd.k {");
    let out = share(&text, "put_proxy", "get_proxy", "proxy");
    assert!(out.contains("component proxy partitioned by put_fwd.v, get_fwd.k {"), "{out}");
}

#[test]
fn refusals() {
    let fanout = fanout();
    let table = fanout.replace(
        "    channel get_fwd(k: int)\n",
        "    channel get_fwd(k: int)\n    table asked(k: int)\n    asked(k) :- get_fwd(k).\n",
    );
    let next_tick = fanout.replace(
        "    channel get_fwd(k: int)\n",
        "    channel get_fwd(k: int)\n    later(k) :+ get_fwd(k).\n    again@r(k) :~ later(k), nodes(\"replica\", r).\n",
    )
    .replace("    channel fetch(k: int)\n", "    channel fetch(k: int)\n    channel again(k: int)\n    got(k, v) :- again(k), data(k, v).\n");
    let partitioned = fanout.replace("component put_proxy {", "component put_proxy partitioned by put_fwd.k {");
    // The get broadcaster pairs with the replicas instead of the coordinator.
    let other_partner = fanout
        .replace("get_fwd@d(k) :~ get(k), partner(self, d), nodes(\"get_proxy\", d).", "get_fwd@d(k) :~ get(k), nodes(\"get_proxy\", d).")
        .replace("    got(k, v) :- fetch(k), data(k, v).\n", "    got(k, v) :- fetch(k), data(k, v).\n    get_fwd@d(k) :~ fetch(k), partner(self, d), nodes(\"get_proxy\", d).\n");
    // One part forwards to the other: merged, it would message itself.
    let chained = fanout.replace(
        "    store@r(k, v) :~ put_fwd(k, v), nodes(\"replica\", r).\n",
        "    store@r(k, v) :~ put_fwd(k, v), nodes(\"replica\", r).\n    get_fwd@g(k) :~ put_fwd(k, _), partner(self, g), nodes(\"get_proxy\", g).\n",
    );
    let return_address = fanout
        .replace("fetch@r(k) :~ get_fwd(k)", "fetch@r(k, self) :~ get_fwd(k)")
        .replace("    channel fetch(k: int)\n", "    channel fetch(k: int, via: addr)\n")
        .replace("got(k, v) :- fetch(k), data(k, v).", "got(k, v) :- fetch(k, _), data(k, v).")
        .replace("missing(k) :- fetch(k),", "missing(k) :- fetch(k, _),");
    // The replicas count the broadcasters: after the merge both names count one set of nodes.
    let counted = fanout.replace(
        "    got(k, v) :- fetch(k), data(k, v).\n",
        "    got(k, v) :- fetch(k), data(k, v).\n    proxies(count(p)) :- nodes(\"put_proxy\", p).\n    got(k, n) :- fetch(k), proxies(n).\n",
    );
    let input = fanout.replace(
        "    channel get_fwd(k: int)\n",
        "    channel get_fwd(k: int)\n    input poke(k: int)\n    fetch@r(k) :~ poke(k), nodes(\"replica\", r).\n",
    );
    let out: Vec<String> = [
        share(&table, "put_proxy", "get_proxy", "proxy"),
        share(&next_tick, "put_proxy", "get_proxy", "proxy"),
        share(&partitioned, "put_proxy", "get_proxy", "proxy"),
        share(&other_partner, "put_proxy", "get_proxy", "proxy"),
        share(&chained, "put_proxy", "get_proxy", "proxy"),
        share(&return_address, "put_proxy", "get_proxy", "proxy"),
        share(&counted, "put_proxy", "get_proxy", "proxy"),
        share(&input, "put_proxy", "get_proxy", "proxy"),
        share(&fanout, "put_proxy", "put_proxy", "proxy"),
        share(&fanout, "put_proxy", "get_proxy", "replica"),
        share(&fanout, "put_proxy", "nobody", "proxy"),
    ]
    .into_iter()
    .collect();
    // Each variant is a valid program: the refusal is the rewrite's, not the analysis'.
    for (i, text) in [&table, &next_tick, &partitioned, &other_partner, &chained, &return_address, &counted, &input]
        .into_iter()
        .enumerate()
    {
        let errors: Vec<_> = analyze(text)
            .diagnostics
            .into_iter()
            .filter(|d| d.severity == compart_analysis::Severity::Error)
            .map(|d| d.message)
            .collect();
        assert!(errors.is_empty(), "variant {i}: {errors:?}");
    }
    assert!(out.iter().all(|o| o.starts_with("refused")), "{out:#?}");
    insta::assert_snapshot!(out.join("\n"));
}

/// In the optimizer's default search: on 4 machines, one per component, nothing else can be
/// added; the merge frees one, which the scale-out gives to the replicas. Without `share`
/// (`--no-share`) the plan is the original program.
#[test]
fn optimizer_merges_when_the_freed_machine_pays() {
    let analysis = analyze(&fanout());
    let options = |share| compart_analysis::optimize::Options { machines: 4, share, ..Default::default() };
    let without = compart_analysis::optimize::optimize(&analysis, &options(false));
    let with = compart_analysis::optimize::optimize(&analysis, &options(true));
    assert_eq!(without.steps.len(), 1, "{}", compart_analysis::optimize::render_steps(&without));
    assert!(with.estimate.throughput > without.estimate.throughput * 1.01);
    assert!(with.estimate.machines <= 4);
    assert!(with.steps[1].description.starts_with("shared proxies: `put_proxy` and `get_proxy`"));
    assert!(with.deployment.contains("put_proxy_get_proxy = 1") && !with.deployment.contains("put_proxy ="));
    insta::assert_snapshot!(format!("{}\n{}", compart_analysis::optimize::render_steps(&with), with.deployment));
}

/// Every pair of components of every example and of the optimizer's plans in bench/emulated (with
/// their decoupled parts): a refusal that names what is in the way (no panic),
/// or a merged program (which `finish` has re-analysed without errors) with one component fewer.
#[test]
fn every_pair_of_the_examples_is_refused_with_a_reason_or_merged() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut pairs = 0;
    let files = ["examples", "bench/emulated"]
        .iter()
        .flat_map(|d| std::fs::read_dir(format!("{root}/../{d}")).unwrap().map(|e| e.unwrap().path()));
    for path in files {
        if path.extension().is_none_or(|e| e != "ded") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let analysis = analyze(&text);
        let names: Vec<String> = analysis.program.components.iter().map(|c| c.name.clone()).collect();
        for a in &names {
            for b in names.iter().filter(|b| *b != a) {
                pairs += 1;
                match rewrite::share(&analysis, a, b, "shared_part") {
                    Ok(result) => {
                        let merged = analyze(&result.new_text);
                        assert_eq!(merged.program.components.len(), names.len() - 1, "{path:?}: {a}, {b}");
                    }
                    Err(refusal) => {
                        assert!(refusal.reason.contains('`'), "{path:?}: {a}, {b}: {}", refusal.reason);
                        assert!(!refusal.reason.contains("internal error"), "{path:?}: {a}, {b}: {}", refusal.reason);
                    }
                }
            }
        }
    }
    assert!(pairs > 20, "only {pairs} pairs");
}
