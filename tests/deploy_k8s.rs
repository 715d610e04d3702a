//! `compart deploy k8s` end to end: the real binary writes the manifests of every bundled example,
//! and `kubernetes-validate` (PyPI, installed by .ci/install) checks each object against the
//! OpenAPI schemas of Kubernetes [`K8S_VERSION`], strictly (unknown fields fail). The ConfigMap is
//! read back with PyYAML (which kubernetes-validate brings) to check that it holds the program byte
//! for byte and a deployment file placing every node at its pod's DNS name; and a pod's files,
//! environment and arguments, as Kubernetes would give them, start a node that answers its
//! liveness probe, and a load client.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The newest Kubernetes whose schemas the pinned kubernetes-validate (.ci/install) bundles.
const K8S_VERSION: &str = "1.37.0";
const VALIDATOR: &str = "kubernetes-validate";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy_k8s").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn compart(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_compart"));
    cmd.current_dir(root()).args(args).env_remove("COMPART_CLUSTER_SECRET").env_remove("COMPART_CLUSTER_SECRET_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `compart deploy k8s` and returns the files it wrote, in its order.
fn deploy(program: &Path, deployment: &Path, dir: &Path, extra: &[&str]) -> Vec<PathBuf> {
    let mut args = vec!["deploy", "k8s", program.to_str().unwrap(), "--deploy", deployment.to_str().unwrap()];
    args.extend(["-o", dir.to_str().unwrap()]);
    args.extend(extra);
    let out = compart(&args, &[]);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
    let written: Vec<PathBuf> =
        text(&out.stdout).lines().filter_map(|l| l.strip_prefix("wrote ")).map(PathBuf::from).collect();
    let mut on_disk: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    on_disk.sort();
    let mut sorted = written.clone();
    sorted.sort();
    assert_eq!(sorted, on_disk, "the files said written are the files in {}", dir.display());
    written
}

/// `kubernetes-validate` on `files`. CI installs it; a machine without it fails here rather than
/// passing without having validated anything.
fn validate(files: &[PathBuf]) -> Output {
    let out = Command::new(VALIDATOR).args(["-k", K8S_VERSION, "--strict"]).args(files).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{VALIDATOR}` ({e}): the manifests cannot be validated. Install it with .ci/install \
                 (python3 -m pip install kubernetes-validate==1.37.0)"
        )
    });
    let says = text(&out.stdout) + &text(&out.stderr);
    assert!(
        !says.contains(&format!("does not support kubernetes version {K8S_VERSION}")),
        "{VALIDATOR} has no schemas of Kubernetes {K8S_VERSION} (.ci/install pins the version that does): {says}"
    );
    out
}

/// Every file but kustomization.yaml holds one object, and each must be validated against a
/// schema: an object whose kind or apiVersion has none only draws a warning, so success alone
/// proves nothing.
fn assert_valid(files: &[PathBuf]) {
    let out = validate(files);
    let report = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{report}");
    for f in files {
        let kustomization = f.file_name().unwrap() == "kustomization.yaml";
        let passed =
            report.lines().filter(|l| l.starts_with(&format!("INFO {} passed for resource", f.display()))).count();
        assert_eq!(passed, if kustomization { 0 } else { 1 }, "{}:\n{report}", f.display());
        if !kustomization {
            assert!(report.contains(&format!("against version {}", &K8S_VERSION[..4])), "{report}");
        }
    }
}

/// A value of the ConfigMap's `data`, as YAML reads it.
fn config_value(dir: &Path, key: &str) -> String {
    let script = "import sys, yaml\nsys.stdout.write(yaml.safe_load(open(sys.argv[1]))['data'][sys.argv[2]])";
    let out = Command::new("python3")
        .args(["-c", script, dir.join("configmap.yaml").to_str().unwrap(), key])
        .output()
        .expect("python3 runs kubernetes-validate, so it is installed");
    assert!(out.status.success(), "{}", text(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn examples() -> Vec<(PathBuf, PathBuf)> {
    let mut out: Vec<(PathBuf, PathBuf)> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ded"))
        .map(|p| {
            let toml = p.with_extension("toml");
            assert!(toml.exists(), "{} has no deployment file", p.display());
            (p, toml)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 4, "{out:?}");
    out
}

#[test]
fn every_example_deploys_to_manifests_that_validate() {
    for (program, deployment) in examples() {
        let stem = program.file_stem().unwrap().to_str().unwrap().to_string();
        let dir = out_dir(&stem);
        let files = deploy(&program, &deployment, &dir, &[]);
        assert_valid(&files);

        // kustomization.yaml lists every object but the load Job.
        let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
        let listed: Vec<&str> = kustomization.lines().filter_map(|l| l.strip_prefix("  - ")).collect();
        let expected: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_str().unwrap().to_string())
            .filter(|f| f != "kustomization.yaml" && f != "load-job.yaml")
            .collect();
        assert_eq!(listed, expected, "{stem}");

        // The ConfigMap holds the program as it is, and a deployment file naming each pod.
        let source = std::fs::read_to_string(&program).unwrap();
        assert_eq!(config_value(&dir, "program.ded"), source, "{stem}");
        let placed: toml::Table = config_value(&dir, "deployment.toml").parse().unwrap();
        let name = stem.replace('_', "-");
        assert_eq!(
            placed["client"].as_str().unwrap(),
            format!("{name}-load-0.{name}.default.svc.cluster.local:7900"),
            "{stem}"
        );
        let analysis = compart_analysis::analyze(&source);
        for c in analysis.program.component_ids() {
            let component = &analysis.program.component(c).name;
            let entry = &placed["components"][component.as_str()];
            let host = format!("{name}-{}-{{n}}.{name}.default.svc.cluster.local", component.replace('_', "-"));
            assert_eq!(entry["host"].as_str(), Some(host.as_str()), "{stem}: {component}");
            assert_eq!(entry["port"].as_integer(), Some(7000), "{stem}: {component}");
            let sts =
                std::fs::read_to_string(dir.join(format!("statefulset-{}.yaml", component.replace('_', "-")))).unwrap();
            let instances = entry["instances"].as_integer().unwrap();
            let partitions = entry.get("partitions").and_then(|p| p.as_integer()).unwrap_or(1);
            assert!(sts.contains(&format!("\n  replicas: {}\n", instances * partitions)), "{stem}: {component}");
        }
    }
}

#[test]
fn options_reach_the_manifests_and_still_validate() {
    let dir = out_dir("options");
    let files = deploy(
        &root().join("examples/kvs.ded"),
        &root().join("examples/kvs.toml"),
        &dir,
        &[
            "--name",
            "store",
            "--namespace",
            "prod",
            "--image",
            "registry.example/compart:1.2",
            "--cpu",
            "500m",
            "--memory",
            "256Mi",
            "--storage",
            "10Gi",
            "--cluster-domain",
            "cluster.example",
        ],
    );
    assert_valid(&files);
    let leader = std::fs::read_to_string(dir.join("statefulset-leader.yaml")).unwrap();
    for expected in [
        "  name: store-leader\n",
        "  namespace: prod\n",
        "image: \"registry.example/compart:1.2\"",
        "limits:\n              cpu: \"500m\"\n              memory: \"256Mi\"\n",
        "storage: \"10Gi\"",
    ] {
        assert!(leader.contains(expected), "{expected}\n{leader}");
    }
    assert!(
        config_value(&dir, "deployment.toml").contains("client = \"store-load-0.store.prod.svc.cluster.example:7900\"")
    );
}

#[test]
fn programs_yaml_cannot_keep_as_a_block_are_quoted_and_still_read_back_exactly() {
    // Carriage returns, an indented first line and trailing blank lines: the compart language
    // accepts all of them; a YAML block scalar would change them.
    let source = std::fs::read_to_string(root().join("examples/voting.ded")).unwrap();
    let dir = out_dir("tricky");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, variant) in [
        ("crlf", source.replace('\n', "\r\n")),
        ("indented", format!("\n   {source}\n\n")),
        ("no_final_newline", source.trim_end().to_string()),
    ] {
        let program = dir.join(format!("{name}.ded"));
        std::fs::write(&program, &variant).unwrap();
        let out = dir.join(name);
        let files = deploy(&program, &root().join("examples/voting.toml"), &out, &[]);
        assert_valid(&files);
        assert_eq!(config_value(&out, "program.ded"), variant, "{name}");
    }
}

#[test]
fn broken_manifests_are_rejected_by_the_validator() {
    let dir = out_dir("broken");
    deploy(&root().join("examples/paxos.ded"), &root().join("examples/paxos.toml"), &dir, &[]);
    let good = std::fs::read_to_string(dir.join("statefulset-acceptor.yaml")).unwrap();
    for (name, broken, says) in [
        ("string-replicas", good.replace("  replicas: 3\n", "  replicas: \"3\"\n"), "spec.replicas"),
        ("unknown-field", good.replace("  podManagementPolicy:", "  podManagementPolicyy:"), "podManagementPolicyy"),
    ] {
        assert_ne!(broken, good, "{name}: the edit applies");
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, broken).unwrap();
        let out = validate(std::slice::from_ref(&path));
        let report = text(&out.stdout) + &text(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{name}: accepted:\n{report}");
        assert!(report.contains("did not validate") && report.contains(says), "{name}: {report}");
    }
}

#[test]
fn the_secret_is_random_private_or_taken_from_the_environment() {
    let key = |dir: &Path| {
        let secret = std::fs::read_to_string(dir.join("secret.yaml")).unwrap();
        let line = secret.lines().find_map(|l| l.strip_prefix("  cluster-secret: ")).unwrap().to_string();
        line.trim_matches('"').to_string()
    };
    let (program, deployment) = (root().join("examples/voting.ded"), root().join("examples/voting.toml"));
    let (a, b) = (out_dir("secret-a"), out_dir("secret-b"));
    deploy(&program, &deployment, &a, &[]);
    deploy(&program, &deployment, &b, &[]);
    assert_eq!(key(&a).len(), 64);
    assert!(key(&a).chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(key(&a), key(&b));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.join("secret.yaml")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let c = out_dir("secret-env");
    let args = ["deploy", "k8s", "examples/voting.ded", "--deploy", "examples/voting.toml", "--secret-from-env", "-o"];
    let mut args = args.to_vec();
    args.push(c.to_str().unwrap());
    let out = compart(&args, &[("COMPART_CLUSTER_SECRET", "kept-across-regenerations")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(key(&c), "kept-across-regenerations");
    // Or from the file nodes would read it from (less its final newline).
    let file = c.join("../secret-file");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let out = compart(&args, &[("COMPART_CLUSTER_SECRET_FILE", file.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(key(&c), "from-a-file");
    let out = compart(&args, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("neither $COMPART_CLUSTER_SECRET nor $COMPART_CLUSTER_SECRET_FILE is set"), "{err}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = out_dir("errors");
    let o = dir.to_str().unwrap();
    let base = ["deploy", "k8s", "examples/paxos.ded", "--deploy", "examples/paxos.toml", "-o", o];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    for (args, code, says) in [
        (with(&["--name", "Paxos"]), 1, "--name `Paxos` is not a DNS label"),
        (with(&["--name", &"p".repeat(60)]), 1, "at most 52"),
        (with(&["--cpu", "fast"]), 1, "--cpu `fast` is not a Kubernetes quantity"),
        (
            vec![
                "deploy".into(),
                "k8s".into(),
                "examples/paxos.ded".into(),
                "--deploy".into(),
                "examples/kvs.toml".into(),
                "-o".into(),
                o.into(),
            ],
            1,
            "deployment: ",
        ),
        (
            vec![
                "deploy".into(),
                "k8s".into(),
                "examples/nope.ded".into(),
                "--deploy".into(),
                "examples/paxos.toml".into(),
                "-o".into(),
                o.into(),
            ],
            2,
            "cannot read",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = compart(&args, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says) && !err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!dir.exists(), "nothing is written when the manifests cannot be made");
    // A file name that makes no DNS label needs --name.
    let odd = out_dir("odd");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::copy(root().join("examples/paxos.ded"), odd.join("2pc.ded")).unwrap();
    let program = odd.join("2pc.ded");
    let args = ["deploy", "k8s", program.to_str().unwrap(), "--deploy", "examples/paxos.toml", "-o", o];
    let out = compart(&args, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`2pc` does not make a DNS label starting with a letter"),
        "{}",
        text(&out.stderr)
    );
}

/// GET `path` from the health server at `addr`: the status code.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn the_pods_command_lines_start_a_node_and_a_load_client() {
    let dir = out_dir("pods");
    deploy(&root().join("examples/paxos.ded"), &root().join("examples/paxos.toml"), &dir, &[]);
    // What the pods get, as Kubernetes reads it: mounted files, environment and arguments.
    let script = r#"
import json, sys, yaml
d = sys.argv[1]
load = lambda f: yaml.safe_load(open(d + "/" + f))
config, secret = load("configmap.yaml")["data"], load("secret.yaml")["stringData"]
node, job = (load(f)["spec"]["template"]["spec"]["containers"][0] for f in ("statefulset-acceptor.yaml", "load-job.yaml"))
json.dump({"program": config["program.ded"], "deployment": config["deployment.toml"], "secret": secret["cluster-secret"],
           "node_args": node["args"], "node_env": node["env"], "load_args": job["args"]}, sys.stdout)
"#;
    let out = Command::new("python3").args(["-c", script, dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pod: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mounted = dir.join("mounted");
    std::fs::create_dir_all(&mounted).unwrap();
    std::fs::write(mounted.join("program.ded"), pod["program"].as_str().unwrap()).unwrap();
    std::fs::write(mounted.join("deployment.toml"), pod["deployment"].as_str().unwrap()).unwrap();
    std::fs::write(mounted.join("cluster-secret"), pod["secret"].as_str().unwrap()).unwrap();
    let env = &pod["node_env"][0];
    assert_eq!(env["name"], "COMPART_CLUSTER_SECRET_FILE");
    assert_eq!(env["value"], "/etc/compart-secret/cluster-secret");
    let secret_env = [("COMPART_CLUSTER_SECRET_FILE", mounted.join("cluster-secret").to_str().unwrap().to_string())];
    // The pod's paths are here; its ordinal (from its host name) is 0; its ports are free ones.
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let health = format!("127.0.0.1:{}", free_port());
    let local = |arg: &str| -> String {
        match arg {
            "hostname" => "0".into(),
            "0.0.0.0:8080" => health.clone(),
            "300" => "1".into(),
            "/var/lib/compart" => dir.join("data").to_str().unwrap().into(),
            a => a.replace("/etc/compart/", &format!("{}/", mounted.display())),
        }
    };
    let args = |key: &str| -> Vec<String> {
        let mut args: Vec<String> = pod[key].as_array().unwrap().iter().map(|a| local(a.as_str().unwrap())).collect();
        args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        args
    };

    let node_args = args("node_args");
    assert!(node_args.windows(2).any(|w| w[0] == "--component" && w[1] == "acceptor"), "{node_args:?}");
    let mut node = Command::new(env!("CARGO_BIN_EXE_compart"))
        .args(&node_args)
        .envs(secret_env.iter().map(|(k, v)| (k, v)))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut live = None;
    while live != Some(200) && std::time::Instant::now() < deadline && node.try_wait().unwrap().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(100));
        live = http_status(&health, "/healthz");
    }
    // Its peers are nowhere: alive, not ready.
    let ready = http_status(&health, "/readyz");
    let _ = node.kill();
    let out = node.wait_with_output().unwrap();
    assert_eq!(live, Some(200), "/healthz of `compart {}`: {}", node_args.join(" "), text(&out.stderr));
    assert!(ready.is_some_and(|s| s != 200), "/readyz: {ready:?}");
    assert!(text(&out.stderr).contains("\"node\":\"acceptor/0\""), "JSON logs: {}", text(&out.stderr));

    let load_args = args("load_args");
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .args(&load_args)
        .envs(secret_env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let err = text(&out.stderr);
    // Accepted, then gave up waiting for the nodes (the options' parser would say `Usage`).
    assert_eq!(out.status.code(), Some(2), "{load_args:?}: {err}");
    assert!(!err.contains("Usage") && err.contains("proposer/0") && err.contains("within 1s"), "{load_args:?}: {err}");
}
