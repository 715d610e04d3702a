//! The mutation check: rewrites of the bundled examples that `compart rewrite` accepts and that
//! pass `compart verify`, each then broken on purpose by small textual edits of the rewritten
//! program (a dropped forwarding rule, a swapped column, a wrong destination, a wrong partition
//! key, a changed comparison or constant, a dropped deletion, ...). Every edit keeps the program
//! valid (`compart check` exits 0; an edit that does not apply, or breaks the program, is skipped
//! and counted), and `compart verify` must report a difference for every one. Each example needs
//! at least 10 valid mutations. The counts caught per example are printed.
//!
//! A mutation's `find` text matches the rewritten program up to whitespace (line breaks may fall
//! anywhere in it), and must match exactly once.
//!
//! Verify runs in up to two configurations, cheapest first: `--quick` (the check the optimizer
//! runs per step), then a deeper one (more sampled seeds and a larger bounded phase); a mutation
//! is caught when either reports a difference. The unmutated rewrite must pass both.

use std::path::Path;

#[allow(dead_code)]
#[path = "soundness/support.rs"]
mod support;

use support::{compart, decoupled_names, deployment, first_difference, looks_internal, on_two_workers, text, ROOT};

struct Mutation {
    what: &'static str,
    find: &'static str,
    replace: &'static str,
    /// Why verify cannot catch this one (outside what a bounded check can see): the test then
    /// requires that it is indeed not caught, so that the list stays true.
    beyond: Option<&'static str>,
}

const fn m(what: &'static str, find: &'static str, replace: &'static str) -> Mutation {
    Mutation { what, find, replace, beyond: None }
}

/// A mutation verify is known not to catch, with the reason.
const fn beyond(what: &'static str, find: &'static str, replace: &'static str, why: &'static str) -> Mutation {
    Mutation { what, find, replace, beyond: Some(why) }
}

struct Rewrite {
    example: &'static str,
    args: &'static [&'static str],
    /// Compare invariants only (sealed partitioning is not an equivalence).
    invariants_only: bool,
    /// Skip the sampled phase of a verifier that has a bounded one: for two-phase commit it
    /// reports a difference in the unmutated rewrite (which participant refuses an op before its
    /// prepare arrives depends on timing, and six sampled schedules of the original do not cover
    /// the rewritten one's), so only the bounded, exhaustive phase is a fair judge there.
    bounded_only: bool,
    mutations: &'static [Mutation],
}

const VOTING_DECOUPLED: &[Mutation] = &[
    m(
        "dropped forwarding rule",
        r#"client_request_broadcaster@dest(id, payload, self) :~ client_request(id, payload), partner(self, dest), nodes("broadcaster", dest)."#,
        "",
    ),
    m(
        "wrong return address forwarded (the broadcaster's own)",
        "client_request_broadcaster@dest(id, payload, self)",
        "client_request_broadcaster@dest(id, payload, dest)",
    ),
    m(
        "ballots sent to the wrong component",
        r#"client_request_broadcaster(id, payload, origin), nodes("participant", p)."#,
        r#"client_request_broadcaster(id, payload, origin), nodes("broadcaster", p)."#,
    ),
    m("ballot for the wrong id", "ballot@p(id, payload, origin)", "ballot@p(id + 1, payload, origin)"),
    m(
        "changed quorum comparison (never reached)",
        "done(id, payload) :- pending(id, payload), vote_count(id, n), n_participants(n).",
        "done(id, payload) :- pending(id, payload), vote_count(id, n), n_participants(m), n > m.",
    ),
    m(
        "deletion joined on the wrong variable (drops other requests' votes)",
        "delete vote_log(id, voter) :- vote_log(id, voter), done(id, _).",
        "delete vote_log(id, voter) :- vote_log(id, voter), done(_, _).",
    ),
    m(
        "participant votes for another id",
        "vote@sender(id, self) :~ ballot(id, _, sender).",
        "vote@sender(id + 1, self) :~ ballot(id, _, sender).",
    ),
    m(
        "reply with a changed payload",
        "client_reply(id, payload) :- done(id, payload).",
        r#"client_reply(id, payload ++ "!") :- done(id, payload)."#,
    ),
    m(
        "changed invariant comparison",
        "invariant no_extra_votes(id) :- vote_count(id, n), n_participants(m), n > m.",
        "invariant no_extra_votes(id) :- vote_count(id, n), n_participants(m), n >= m.",
    ),
    m(
        "changed constant (payload dropped)",
        "pending(id, payload) :- client_request(id, payload).",
        r#"pending(id, "x") :- client_request(id, _)."#,
    ),
];

const VOTING_PARTITIONED: &[Mutation] = &[
    m(
        "wrong partition key for votes",
        "partitioned by client_request.id, vote.id",
        "partitioned by client_request.id, vote.voter",
    ),
    m(
        "wrong partition key for requests",
        "partitioned by client_request.id, vote.id",
        "partitioned by client_request.payload, vote.id",
    ),
];

const TPC_DECOUPLED: &[Mutation] = &[
    m(
        "dropped forwarding rule",
        r#"ack_acks@dest(txn, outcome, voter) :~ ack(txn, outcome, voter), partner(self, dest), nodes("acks", dest)."#,
        "",
    ),
    m(
        "swapped column in the forwarding (voter replaced by the coordinator)",
        "ack_acks@dest(txn, outcome, voter)",
        "ack_acks@dest(txn, outcome, self)",
    ),
    m(
        "changed constant in the forwarding",
        "ack_acks@dest(txn, outcome, voter)",
        r#"ack_acks@dest(txn, "commit", voter)"#,
    ),
    m(
        "changed comparison (ack quorum never reached)",
        "done(txn, outcome) :- ack_count(txn, outcome, n), n_participants_acks(n).",
        "done(txn, outcome) :- ack_count(txn, outcome, n), n_participants_acks(m), n > m.",
    ),
    m(
        "deletion triggered by every ack",
        "delete ack_log(txn, outcome, voter) :- ack_log(txn, outcome, voter), done(txn, outcome).",
        "delete ack_log(txn, outcome, voter) :- ack_log(txn, outcome, voter), ack_acks(txn, _, _).",
    ),
    m(
        "abort on a yes vote",
        r#"decide(txn, "abort") :- vote(txn, _, false), !decision(txn, _)."#,
        r#"decide(txn, "abort") :- vote(txn, _, true), !decision(txn, _)."#,
    ),
    m("changed constant (refused op)", r#"cannot_do("overdraw")."#, r#"cannot_do("a")."#),
    m(
        "participants always vote yes",
        "vote@coord(txn, self, ok) :~ my_vote(txn, ok, coord).",
        "vote@coord(txn, self, true) :~ my_vote(txn, _, coord).",
    ),
    m(
        "participants log commit whatever the outcome",
        "outcome_log(txn, outcome) :- outcome(txn, outcome, _).",
        r#"outcome_log(txn, "commit") :- outcome(txn, _, _)."#,
    ),
];

const TPC_PARTITIONED: &[Mutation] = &[
    m(
        "wrong partition key for votes",
        "partitioned by begin.txn, vote.txn, ack.txn",
        "partitioned by begin.txn, vote.voter, ack.txn",
    ),
    m(
        "wrong partition key for acks",
        "partitioned by begin.txn, vote.txn, ack.txn",
        "partitioned by begin.txn, vote.txn, ack.voter",
    ),
    m(
        "changed comparison (commit one yes vote short)",
        r#"decide(txn, "commit") :- yes_count(txn, n), n_participants(n), !decision(txn, _)."#,
        r#"decide(txn, "commit") :- yes_count(txn, n), n_participants(m), n + 1 >= m, !decision(txn, _)."#,
    ),
];

const PAXOS_PROXY: &[Mutation] = &[
    m(
        "dropped forwarding rule",
        r#"propose_proxy_leader@dest(s, b, id, payload, self) :~ propose(s, b, id, payload), partner(self, dest), nodes("proxy_leader", dest)."#,
        "",
    ),
    m(
        "wrong return address forwarded (the proxy's own)",
        "propose_proxy_leader@dest(s, b, id, payload, self)",
        "propose_proxy_leader@dest(s, b, id, payload, dest)",
    ),
    m("p2a for the wrong slot", "p2a@a(origin, b, s, id, payload)", "p2a@a(origin, b, s + 1, id, payload)"),
];

const PAXOS_COMMIT: &[Mutation] = &[
    m(
        "dropped forwarding rule",
        r#"propose_commit_part@dest(s, b, id, payload) :~ propose(s, b, id, payload), partner(self, dest), nodes("commit_part", dest)."#,
        "",
    ),
    m(
        "swapped join columns (ballot and slot)",
        "accepted_by(s, b, a) :- p2b(a, b, s, b, _).",
        "accepted_by(s, b, a) :- p2b(a, s, b, b, _).",
    ),
    m(
        "changed quorum comparison (never reached)",
        "accept_count(s, b, c), n_acceptors_commit_part(n), 2 * c > n,",
        "accept_count(s, b, c), n_acceptors_commit_part(n), c > n,",
    ),
    beyond(
        "inverted nack filter",
        "max_ballot > ballot.",
        "max_ballot < ballot.",
        "liveness under fairness only: a preempted leader no longer hears of the preemption and keeps proposing with its old ballot; the original too leaves the request unanswered until a later timeout, so no finite workload's endings differ",
    ),
    m(
        "p2b sent to the wrong destination",
        r#"promised(m), partner(p, dest), nodes("commit_part", dest)."#,
        r#"promised(m), partner(self, dest), nodes("commit_part", dest)."#,
    ),
    m(
        "reply with the wrong slot",
        "reply(id, s, payload) :- commit(s, id, payload).",
        "reply(id, s + 1, payload) :- commit(s, id, payload).",
    ),
    m("dropped deletion of the replaced promise", "delete max_ballot(b) :- max_ballot(b), promised(m), b < m.", ""),
    m(
        "acceptors accept whatever they promised",
        "accept(s, b, id, payload) :- p2a(_, b, s, id, payload), promised(b).",
        "accept(s, b, id, payload) :- p2a(_, b, s, id, payload), promised(_).",
    ),
];

const PAXOS_SEALED: &[Mutation] = &[
    m(
        "seal dropped (a p1b from the first part in)",
        "p1b_arrived(acceptor, ballot, parts, parts),",
        "p1b_arrived(acceptor, ballot, parts, c), c >= 1,",
    ),
    beyond(
        "wrong partition key",
        "partitioned by p2a.slot",
        "partitioned by p2a.ballot",
        "with one proposer every p2a of a run has one ballot, so one instance takes them all; with two, every instance still hears every p1a (sealed broadcast), and no explored schedule shows a difference",
    ),
    m(
        "wrong recombination of the summed log size",
        "log_size = (log_size_tagged - parts * (parts - 1) / 2) / parts.",
        "log_size = log_size_tagged / parts.",
    ),
];

const KVS_DECOUPLED: &[Mutation] = &[
    m(
        "dropped forwarding rule",
        r#"assigned_broadcaster@dest(seq, req, k, v, self) :~ assigned(seq, req, k, v), partner(self, dest), nodes("broadcaster", dest)."#,
        "",
    ),
    m("apply with the wrong sequence number", "apply@r(seq, req, k, v, origin)", "apply@r(seq + 1, req, k, v, origin)"),
    m("swapped columns (key and value)", "apply@r(seq, req, k, v, origin)", "apply@r(seq, req, v, k, origin)"),
    m(
        "wrong return address forwarded (the broadcaster's own)",
        "assigned_broadcaster@dest(seq, req, k, v, self)",
        "assigned_broadcaster@dest(seq, req, k, v, dest)",
    ),
    m(
        "changed comparison (ack quorum never reached)",
        "complete(seq, req) :- log(seq, req, _, _), ack_count(seq, n), n_replicas(n).",
        "complete(seq, req) :- log(seq, req, _, _), ack_count(seq, n), n_replicas(m), n > m.",
    ),
    m(
        "changed constant in the in-order recursion",
        "ready(next) :- ready(seq), next = seq + 1, pending(next, _, _, _, _).",
        "ready(next) :- ready(seq), next = seq + 2, pending(next, _, _, _, _).",
    ),
    m(
        "dropped deletion of applied writes",
        "delete pending(seq, req, k, v, l) :- pending(seq, req, k, v, l), ready(seq).",
        "",
    ),
    m("apply point does not advance", "next_apply(m + 1) :+ applied_max(m).", "next_apply(m) :+ applied_max(m)."),
    m(
        "sequence numbers skip one per batch",
        "next_seq(n + c) :+ next_seq(n), batch_size(c).",
        "next_seq(n + c + 1) :+ next_seq(n), batch_size(c).",
    ),
    m(
        "changed comparison in the ranking",
        "assign_rank(req, count(other)) :- put(req, _, _), put(other, _, _), other <= req.",
        "assign_rank(req, count(other)) :- put(req, _, _), put(other, _, _), other < req.",
    ),
    m(
        "changed constant (a miss reported as found)",
        r#"get_reply(req, k, "", false) :- get(req, k), !store(k, _)."#,
        r#"get_reply(req, k, "", true) :- get(req, k), !store(k, _)."#,
    ),
    m(
        "acks sent to the wrong destination",
        "applied@l(seq, self) :~ ready(seq), pending(seq, _, _, _, l).",
        "applied@self(seq, self) :~ ready(seq), pending(seq, _, _, _, _).",
    ),
];

const REWRITES: &[Rewrite] = &[
    Rewrite {
        example: "voting",
        args: &["--decouple", "leader:ballot", "--into", "broadcaster"],
        invariants_only: false,
        bounded_only: false,
        mutations: VOTING_DECOUPLED,
    },
    Rewrite {
        example: "voting",
        args: &["--partition", "leader", "--by", "id"],
        invariants_only: false,
        bounded_only: false,
        mutations: VOTING_PARTITIONED,
    },
    Rewrite {
        example: "two_phase_commit",
        args: &["--decouple", "coordinator:ack_log,ack_count,done,finished", "--into", "acks"],
        invariants_only: false,
        bounded_only: true,
        mutations: TPC_DECOUPLED,
    },
    Rewrite {
        example: "two_phase_commit",
        args: &["--partition", "coordinator", "--by", "txn"],
        invariants_only: false,
        bounded_only: true,
        mutations: TPC_PARTITIONED,
    },
    Rewrite {
        example: "paxos",
        args: &["--decouple", "proposer:p2a", "--into", "proxy_leader"],
        invariants_only: false,
        bounded_only: false,
        mutations: PAXOS_PROXY,
    },
    Rewrite {
        example: "paxos",
        args: &[
            "--decouple",
            "proposer:proposals,accepted_by,accept_count,commit,committed,reply",
            "--into",
            "commit_part",
        ],
        invariants_only: false,
        bounded_only: false,
        mutations: PAXOS_COMMIT,
    },
    Rewrite {
        example: "paxos",
        args: &["--partition", "acceptor", "--by", "slot", "--seal"],
        invariants_only: true,
        bounded_only: false,
        mutations: PAXOS_SEALED,
    },
    Rewrite {
        example: "kvs",
        args: &["--decouple", "leader:apply", "--into", "broadcaster"],
        invariants_only: false,
        bounded_only: false,
        mutations: KVS_DECOUPLED,
    },
];

/// Replace the one occurrence of `find` in `text`, whitespace in `find` matching any run of
/// whitespace (or none); None when it occurs zero or several times.
fn replace_once(text: &str, find: &str, replace: &str) -> Option<String> {
    let chunks: Vec<&str> = find.split_whitespace().collect();
    let first = *chunks.first()?;
    let matches: Vec<(usize, usize)> = text
        .match_indices(first)
        .filter_map(|(start, _)| {
            let mut at = start + first.len();
            for chunk in &chunks[1..] {
                at += text[at..].len() - text[at..].trim_start().len();
                if !text[at..].starts_with(chunk) {
                    return None;
                }
                at += chunk.len();
            }
            Some((start, at))
        })
        .collect();
    match matches.as_slice() {
        [(start, end)] => Some(format!("{}{replace}{}", &text[..*start], &text[*end..])),
        _ => None,
    }
}

#[test]
fn replace_once_ignores_line_breaks_and_refuses_ambiguity() {
    let text = "a@d(x) :~\n    b(x),\n    c(x).\nb(y).\nb(y).\n";
    assert_eq!(replace_once(text, "a@d(x) :~ b(x), c(x).", "").as_deref(), Some("\nb(y).\nb(y).\n"));
    assert_eq!(replace_once(text, "b(y).", "z."), None, "two matches");
    assert_eq!(replace_once(text, "q(x).", "z."), None, "no match");
}

enum Verdict {
    Caught(String),
    Missed,
    Skipped(String),
    Error(String),
}

struct Prepared {
    /// The rewritten program (unmutated), its deployment, and the verify configurations for it.
    text: String,
    toml: String,
    configs: Vec<Vec<String>>,
}

fn verify(original: &str, rewritten: &Path, flags: &[String]) -> (Option<i32>, String, String) {
    let mut cmd = vec!["verify", original, rewritten.to_str().unwrap()];
    cmd.extend(flags.iter().map(String::as_str));
    let out = compart(&cmd);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

fn write(dir: &Path, name: &str, program: &str, toml: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(format!("{name}.ded"));
    std::fs::write(&file, program).unwrap();
    std::fs::write(file.with_extension("toml"), toml).unwrap();
    file
}

fn prepare(rewrite: &Rewrite, scratch: &Path, index: usize) -> Result<Prepared, String> {
    let original = format!("examples/{}.ded", rewrite.example);
    let mut cmd = vec!["rewrite", original.as_str()];
    cmd.extend(rewrite.args);
    let out = compart(&cmd);
    if !out.status.success() {
        return Err(format!("{:?} is not accepted today: {}", rewrite.args, text(&out.stderr)));
    }
    let new_text = text(&out.stdout);
    let original_toml =
        std::fs::read_to_string(Path::new(ROOT).join(format!("examples/{}.toml", rewrite.example))).ok();
    let names = decoupled_names(rewrite.args);
    let toml = deployment(&new_text, original_toml.as_deref(), names.as_ref().map(|(a, b)| (a.as_str(), b.as_str())));
    let configs = support::verify_configs(!rewrite.bounded_only, rewrite.invariants_only);
    let file = write(&scratch.join(format!("baseline-{index}")), rewrite.example, &new_text, &toml);
    for flags in &configs {
        let (code, stdout, stderr) = verify(&original, &file, flags);
        if code != Some(0) {
            return Err(format!(
                "the unmutated rewrite {:?} does not pass verify {} (exit {code:?}): {}\n{stdout}{stderr}",
                rewrite.args,
                flags.join(" "),
                first_difference(&stdout)
            ));
        }
    }
    Ok(Prepared { text: new_text, toml, configs })
}

fn judge(rewrite: &Rewrite, prepared: &Prepared, mutation: &Mutation, dir: &Path) -> Verdict {
    let Some(mutated) = replace_once(&prepared.text, mutation.find, mutation.replace) else {
        return Verdict::Skipped("does not apply (no single match)".into());
    };
    let file = write(dir, rewrite.example, &mutated, &prepared.toml);
    let check = compart(&["check", file.to_str().unwrap()]);
    if !check.status.success() {
        let first = text(&check.stdout).lines().chain(text(&check.stderr).lines()).next().unwrap_or("").to_string();
        return Verdict::Skipped(format!("does not pass `compart check`: {first}"));
    }
    let original = format!("examples/{}.ded", rewrite.example);
    for flags in &prepared.configs {
        let (code, stdout, stderr) = verify(&original, &file, flags);
        match code {
            Some(1) if !looks_internal(&stderr) => {
                return Verdict::Caught(format!("[{}] {}", flags.join(" "), first_difference(&stdout)))
            }
            Some(0) if !looks_internal(&stderr) => {}
            code => return Verdict::Error(format!("verify exit {code:?}: {}", stderr.lines().next().unwrap_or(""))),
        }
    }
    Verdict::Missed
}

#[test]
fn verify_catches_broken_rewrites_of_the_examples() {
    let started = std::time::Instant::now();
    let scratch = std::env::temp_dir().join(format!("compart-mutations-{}", std::process::id()));
    let mut problems: Vec<String> = Vec::new();
    let prepared: Vec<Option<Prepared>> = REWRITES
        .iter()
        .enumerate()
        .map(|(i, r)| prepare(r, &scratch, i).map_err(|e| problems.push(format!("{}: {e}", r.example))).ok())
        .collect();
    // Every (rewrite, mutation) pair, judged by two workers (the machine has two cores).
    let jobs: Vec<(usize, usize)> = REWRITES
        .iter()
        .enumerate()
        .filter(|(i, _)| prepared[*i].is_some())
        .flat_map(|(i, r)| (0..r.mutations.len()).map(move |j| (i, j)))
        .collect();
    let verdicts: Vec<Verdict> = on_two_workers(&jobs, |&(i, j)| {
        let rewrite = &REWRITES[i];
        let dir = scratch.join(format!("mutation-{i}-{j}"));
        let verdict = judge(rewrite, prepared[i].as_ref().unwrap(), &rewrite.mutations[j], &dir);
        let _ = std::fs::remove_dir_all(&dir);
        verdict
    });
    let _ = std::fs::remove_dir_all(&scratch);

    let mut examples: Vec<&str> = REWRITES.iter().map(|r| r.example).collect();
    examples.dedup();
    let mut summary = String::new();
    for example in examples {
        let (mut caught, mut valid, mut skipped, mut known) = (0, 0, 0, 0);
        let mut lines = String::new();
        for ((i, j), verdict) in jobs.iter().zip(&verdicts).filter(|((i, _), _)| REWRITES[*i].example == example) {
            let rewrite = &REWRITES[*i];
            let what = format!("{} / {}", rewrite.args.join(" "), rewrite.mutations[*j].what);
            match verdict {
                Verdict::Caught(how) if rewrite.mutations[*j].beyond.is_some() => {
                    caught += 1;
                    valid += 1;
                    lines.push_str(&format!("  caught   {what}: {how}\n"));
                    problems.push(format!("{example}: now caught, listed as beyond verify: {what} (make it `m`)"));
                }
                Verdict::Caught(how) => {
                    caught += 1;
                    valid += 1;
                    lines.push_str(&format!("  caught   {what}: {how}\n"));
                }
                Verdict::Missed if rewrite.mutations[*j].beyond.is_some() => {
                    known += 1;
                    let why = rewrite.mutations[*j].beyond.unwrap_or_default();
                    lines.push_str(&format!("  beyond   {what}: {why}\n"));
                }
                Verdict::Missed => {
                    valid += 1;
                    lines.push_str(&format!("  MISSED   {what}\n"));
                    problems.push(format!("{example}: not caught: {what}"));
                }
                Verdict::Error(e) => {
                    valid += 1;
                    lines.push_str(&format!("  ERROR    {what}: {e}\n"));
                    problems.push(format!("{example}: verify failed on {what}: {e}"));
                }
                Verdict::Skipped(why) => {
                    skipped += 1;
                    lines.push_str(&format!("  skipped  {what}: {why}\n"));
                }
            }
        }
        summary.push_str(&format!(
            "{example}: caught {caught} / {valid} valid mutations ({skipped} skipped, {known} beyond a bounded check)\n{lines}"
        ));
        if valid < 10 {
            problems.push(format!("{example}: only {valid} valid mutations (at least 10 needed)"));
        }
    }
    eprintln!("{summary}\nin {:.1?}", started.elapsed());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
