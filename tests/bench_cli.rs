//! `compart bench` end to end through the real binary: voting only, a small workload. The
//! original and the optimizer's rewrite both run as real clusters; the JSON report must show
//! every request answered, the rewrite verified, and a scale-out prediction from measured costs.

use std::process::Command;

#[test]
fn bench_voting_compares_original_and_rewritten() {
    let dir = std::env::temp_dir().join(format!("compart-bench-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bench", "--protocol", "voting", "--requests", "300", "--clients", "16", "--seeds", "3"])
        .args(["--quiet", "--format", "json", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    assert_eq!(json["schema"], "compart-bench/1");
    assert_eq!(json["ok"], true);
    let protocols = json["protocols"].as_array().unwrap();
    assert_eq!(protocols.len(), 1);
    let p = &protocols[0];
    assert_eq!(p["name"], "voting");
    assert_eq!(p["errors"].as_array().unwrap().len(), 0, "{p}");
    assert_eq!(p["verify"]["ok"], true, "{}", p["verify"]["output"]);
    assert!(p["verify"]["output"].as_str().unwrap().contains("no difference found over 3 seed(s)"));
    let opt = &p["optimizer"];
    assert_eq!(opt["machines_budget"], 12);
    assert!(opt["predicted_gain"].as_f64().unwrap() > 1.0, "{opt}");
    assert!(opt["profile_predicted_gain"].as_f64().unwrap() > 1.0, "{opt}");
    let (base, new) = (&p["base"], &p["rewritten"]);
    for run in [base, new] {
        assert_eq!(run["ok"], true, "{run}");
        assert_eq!(run["sent"], 300);
        assert_eq!(run["ok_replies"], 300);
        for k in ["missing", "duplicates", "mismatched", "unexpected"] {
            assert_eq!(run[k], 0, "{k}: {run}");
        }
        let nodes = run["nodes"].as_array().unwrap();
        assert_eq!(run["instances"].as_u64().unwrap() as usize, nodes.len());
        // The bottleneck is the most loaded instance, and the prediction is 1e6 / its cost.
        let worst = nodes.iter().map(|n| n["cpu_us_per_request"].as_f64().unwrap()).fold(0.0, f64::max);
        assert!(worst > 0.0, "{run}");
        assert_eq!(run["bottleneck_cpu_us_per_request"].as_f64().unwrap(), worst);
        let predicted = run["predicted_scale_out_rps"].as_f64().unwrap();
        assert!((predicted - 1e6 / worst).abs() < 1e-6 * predicted, "{run}");
        assert!(run["throughput_rps"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(base["instances"], 4);
    assert!(new["instances"].as_u64().unwrap() > base["instances"].as_u64().unwrap(), "{new}");
    assert!(new["nodes"].as_array().unwrap().iter().any(|n| n["name"] == "leader/0.1"), "{new}");
    // Everything the report names is on disk.
    for f in ["report.md", "report.json", "voting.optimized.ded", "voting.optimized.toml", "voting.base.json"] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| predicted scale-out requests/s |"), "{md}");
    assert!(md.contains("passed (3 seeds, outputs and invariants)"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_protocol_without_a_budget_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bench", "--protocol", "kvs", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kvs=MACHINES"));
}

#[test]
fn a_protocol_that_cannot_run_fails_the_bench_and_says_why() {
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bench", "--protocol", "no_such_protocol=3", "--quiet", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false);
    let errors = json["protocols"][0]["errors"].as_array().unwrap();
    assert!(errors[0].as_str().unwrap().contains("cannot read examples/no_such_protocol.ded"), "{errors:?}");
}
