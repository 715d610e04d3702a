use super::*;

const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// `proposer_p2a` is partitioned and keeps a table; `relay` keeps none.
const PROGRAM: &str = "component proposer_p2a partitioned by x { table t(x: int) }\n\
                       component relay { channel c(x: int) }\n";

fn program(text: &str) -> Program {
    let analysis = compart_analysis::analyze(text);
    assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
    analysis.program
}

fn generate(deployment: &str, opts: &K8sOptions) -> Result<Vec<(String, String)>, K8sError> {
    manifests(PROGRAM, &program(PROGRAM), deployment, opts)
}

fn file<'a>(files: &'a [(String, String)], name: &str) -> &'a str {
    &files.iter().find(|(f, _)| f == name).unwrap_or_else(|| panic!("no {name} among {files:?}")).1
}

fn opts() -> K8sOptions {
    K8sOptions::new("demo", "compart:test", SECRET)
}

const DEPLOYMENT: &str = "base_port = 7500\n[components]\nproposer_p2a = { instances = 2, partitions = 3 }\nrelay = 4\n\n[workload]\ninput = \"c\"\n";

#[test]
fn dns_labels_lowercase_and_replace_what_dns_forbids() {
    assert_eq!(dns_label("proposer_p2a"), "proposer-p2a");
    assert_eq!(dns_label("Paxos.optimized"), "paxos-optimized");
    assert_eq!(dns_label("_x__y_"), "x--y");
    assert_eq!(dns_label("__"), "");
}

#[test]
fn one_statefulset_per_component_with_instances_times_partitions_replicas() {
    let files = generate(DEPLOYMENT, &opts()).unwrap();
    let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        names,
        [
            "kustomization.yaml",
            "configmap.yaml",
            "secret.yaml",
            "service.yaml",
            "networkpolicy.yaml",
            "statefulset-proposer-p2a.yaml",
            "statefulset-relay.yaml",
            "load-job.yaml"
        ]
    );
    let p2a = file(&files, "statefulset-proposer-p2a.yaml");
    assert!(p2a.contains("\n  name: demo-proposer-p2a\n"), "{p2a}");
    assert!(p2a.contains("\n  replicas: 6\n"), "{p2a}");
    // `--component` takes the program's name, the labels the DNS one.
    assert!(p2a.contains("- --component\n            - proposer_p2a\n"), "{p2a}");
    assert!(p2a.contains("app.kubernetes.io/component: proposer-p2a"), "{p2a}");
    assert!(file(&files, "statefulset-relay.yaml").contains("\n  replicas: 4\n"));
    // Every object but the load Job is applied by the kustomization.
    let kustomization = file(&files, "kustomization.yaml");
    for (name, _) in &files[1..] {
        assert_eq!(kustomization.contains(&format!("  - {name}\n")), name != LOAD_JOB_FILE, "{name}");
    }
}

#[test]
fn the_deployment_file_places_every_component_at_its_pods_dns_names() {
    let files = generate(DEPLOYMENT, &opts()).unwrap();
    let doc: toml::Table = deployment_toml(&files).parse().unwrap();
    assert_eq!(doc["base_port"].as_integer(), Some(7500));
    assert_eq!(doc["client"].as_str(), Some("demo-load-0.demo.default.svc.cluster.local:7900"));
    assert_eq!(doc["workload"]["input"].as_str(), Some("c"));
    let p2a = doc["components"]["proposer_p2a"].as_table().unwrap();
    assert_eq!(p2a["instances"].as_integer(), Some(2));
    assert_eq!(p2a["partitions"].as_integer(), Some(3));
    assert_eq!(p2a["host"].as_str(), Some("demo-proposer-p2a-{n}.demo.default.svc.cluster.local"));
    assert_eq!(p2a["port"].as_integer(), Some(NODE_PORT as i64));
    let relay = doc["components"]["relay"].as_table().unwrap();
    assert_eq!(relay["host"].as_str(), Some("demo-relay-{n}.demo.default.svc.cluster.local"));
    assert!(!relay.contains_key("partitions"));
    // Without the placements it is the user's deployment: the same nodes.
    let mut counts_only = doc.clone();
    counts_only.remove("client");
    for c in ["proposer_p2a", "relay"] {
        let t = counts_only["components"][c].as_table().unwrap().clone();
        let mut t2 = t.clone();
        t2.remove("host");
        t2.remove("port");
        counts_only["components"].as_table_mut().unwrap().insert(c.into(), toml::Value::Table(t2));
    }
    let p = program(PROGRAM);
    let ours = Deployment::from_toml(&toml::to_string(&counts_only).unwrap(), &p).unwrap();
    let theirs = Deployment::from_toml(DEPLOYMENT, &p).unwrap();
    assert_eq!(ours, theirs);
    // The namespace and cluster domain are part of every name.
    let mut o = opts();
    o.namespace = "prod".into();
    o.cluster_domain = "example.internal".into();
    let files = generate(DEPLOYMENT, &o).unwrap();
    assert!(file(&files, "configmap.yaml").contains("client = \"demo-load-0.demo.prod.svc.example.internal:7900\""));
    assert!(file(&files, "load-job.yaml").contains("      hostname: demo-load-0\n      subdomain: demo\n"));
}

#[test]
fn components_with_tables_keep_their_log_on_a_volume_claim_others_on_an_empty_dir() {
    let mut o = opts();
    o.storage = "5Gi".into();
    let files = generate(DEPLOYMENT, &o).unwrap();
    let with_tables = file(&files, "statefulset-proposer-p2a.yaml");
    assert!(with_tables.contains("  volumeClaimTemplates:\n"), "{with_tables}");
    assert!(with_tables.contains("storage: \"5Gi\""), "{with_tables}");
    assert!(!with_tables.contains("emptyDir"), "{with_tables}");
    let without = file(&files, "statefulset-relay.yaml");
    assert!(!without.contains("volumeClaimTemplates"), "{without}");
    assert!(without.contains("        - name: data\n          emptyDir: {}\n"), "{without}");
    // Both log (what a node sends is logged too), to the mounted volume.
    for f in [with_tables, without] {
        assert!(f.contains("- --durable\n            - /var/lib/compart\n"), "{f}");
        assert!(f.contains("mountPath: /var/lib/compart"), "{f}");
    }
}

#[test]
fn the_secret_reaches_pods_as_a_file_never_as_an_argument() {
    let files = generate(DEPLOYMENT, &opts()).unwrap();
    assert!(file(&files, "secret.yaml").contains(&format!("  cluster-secret: \"{SECRET}\"\n")));
    for (name, text) in &files {
        if name != "secret.yaml" {
            assert!(!text.contains(SECRET), "{name} holds the secret");
        }
        if name.starts_with("statefulset-") || name == LOAD_JOB_FILE {
            assert!(text.contains("COMPART_CLUSTER_SECRET_FILE\n"), "{name}");
            assert!(text.contains("value: /etc/compart-secret/cluster-secret\n"), "{name}");
        }
    }
    let mut o = opts();
    o.secret = String::new();
    assert!(generate(DEPLOYMENT, &o).unwrap_err().message.contains("cluster secret"));
}

#[test]
fn cpu_and_memory_given_are_requests_and_limits() {
    let defaults = generate(DEPLOYMENT, &opts()).unwrap();
    let relay = file(&defaults, "statefulset-relay.yaml");
    assert!(relay.contains("requests:\n              cpu: \"100m\"\n              memory: \"128Mi\"\n"), "{relay}");
    assert!(!relay.contains("limits:"), "{relay}");
    let mut o = opts();
    o.cpu = Some("250m".into());
    let files = generate(DEPLOYMENT, &o).unwrap();
    let relay = file(&files, "statefulset-relay.yaml");
    assert!(relay.contains("requests:\n              cpu: \"250m\"\n              memory: \"128Mi\"\n"), "{relay}");
    assert!(relay.contains("limits:\n              cpu: \"250m\"\n          securityContext"), "{relay}");
}

#[test]
fn names_beyond_kubernetes_limits_are_refused_saying_which_limit() {
    let long = |n: usize| "a".repeat(n);
    // `<name>-proposer-p2a` (13 more characters) must fit a StatefulSet's 52.
    let mut o = opts();
    o.name = long(39);
    assert!(generate(DEPLOYMENT, &o).is_ok());
    o.name = long(40);
    let e = generate(DEPLOYMENT, &o).unwrap_err().message;
    assert!(e.contains("component `proposer_p2a`") && e.contains("53 characters") && e.contains("at most 52"), "{e}");
    for (name, says) in [
        ("Demo", "not a DNS label"),
        ("2pc", "starting with a letter"),
        ("demo-", "not a DNS label"),
        ("de_mo", "not a DNS label"),
        ("", "not a DNS label"),
    ] {
        o.name = name.into();
        let e = generate(DEPLOYMENT, &o).unwrap_err().message;
        assert!(e.contains("--name") && e.contains(says), "{name}: {e}");
    }
    let mut o = opts();
    o.namespace = long(64);
    let e = generate(DEPLOYMENT, &o).unwrap_err().message;
    assert!(e.contains("--namespace") && e.contains("at most 63"), "{e}");
    // The whole DNS name of the last pod: at most 253 characters.
    let mut o = opts();
    o.cluster_domain = [long(63), long(63), long(63), long(63)].join(".");
    let e = generate(DEPLOYMENT, &o).unwrap_err().message;
    assert!(e.contains("at most 253") && e.contains("demo-proposer-p2a-5."), "{e}");
}

#[test]
fn components_that_make_the_same_pod_names_are_refused() {
    let text = "component a_b { table t(x: int) }\ncomponent A_b { table u(x: int) }\n";
    let e = manifests(text, &program(text), "[components]\na_b = 1\nA_b = 1\n", &opts()).unwrap_err().message;
    assert!(e.contains("`a_b` and `A_b` both make the DNS name `a-b`"), "{e}");
    let text = "component load { table t(x: int) }\n";
    let e = manifests(text, &program(text), "[components]\nload = 1\n", &opts()).unwrap_err().message;
    assert!(e.contains("component `load`") && e.contains("demo-load-0"), "{e}");
}

#[test]
fn bad_options_and_deployments_are_errors() {
    for (set, says) in [
        (
            (|o: &mut K8sOptions| o.cpu = Some("lots".into())) as fn(&mut K8sOptions),
            "--cpu `lots` is not a Kubernetes quantity",
        ),
        (|o| o.memory = Some("128MB".into()), "--memory `128MB`"),
        (|o| o.storage = "1..5Gi".into(), "--storage `1..5Gi`"),
        (|o| o.image = "compart 1".into(), "--image"),
        (|o| o.cluster_domain = "cluster..local".into(), "--cluster-domain"),
    ] {
        let mut o = opts();
        set(&mut o);
        let e = generate(DEPLOYMENT, &o).unwrap_err().message;
        assert!(e.contains(says), "{says}: {e}");
    }
    for q in ["100m", "0.5", "2", "128Mi", "1Gi", "1e3", "1E-2"] {
        assert!(check_quantity("q", q).is_ok(), "{q}");
    }
    let e = generate("[components]\nrelay = 1\n", &opts()).unwrap_err().message;
    assert!(e.starts_with("deployment: ") && e.contains("proposer_p2a"), "{e}");
    let e = generate("[components]\nproposer_p2a = 0\nrelay = 0\n", &opts()).unwrap_err().message;
    assert!(e.contains("runs no node"), "{e}");
}

#[test]
fn text_blocks_keep_the_text_or_fall_back_to_a_quoted_string() {
    assert_eq!(text_block("a\n\n  b\n", 4), "|\n    a\n\n      b");
    assert_eq!(text_block("a", 4), "|-\n    a");
    assert_eq!(text_block("a\n\n\n", 2), "|+\n  a\n\n");
    // Blanks where the block's indentation is read, carriage returns, blank-only lines: quoted.
    assert_eq!(text_block("  a\n", 4), "\"  a\\n\"");
    assert_eq!(text_block("\n\n a\n", 4), "\"\\n\\n a\\n\"");
    assert_eq!(text_block("a\r\nb\r\n", 4), "\"a\\r\\nb\\r\\n\"");
    assert_eq!(text_block("a\n  \nb\n", 4), "\"a\\n  \\nb\\n\"");
    assert_eq!(text_block("", 4), "\"\"");
}

#[test]
fn scalars_that_yaml_would_read_as_something_else_are_quoted() {
    assert_eq!(scalar("paxos-acceptor"), "paxos-acceptor");
    assert_eq!(scalar("--deploy"), "--deploy");
    assert_eq!(scalar("/etc/compart"), "/etc/compart");
    for s in ["no", "On", "null", "100m", "0.0.0.0:8080", "compart:1", "-1", "a b", "", "~"] {
        assert!(scalar(s).starts_with('"'), "{s}");
    }
}

fn config_hash(files: &[(String, String)]) -> String {
    let line = files.iter().flat_map(|(_, c)| c.lines()).find_map(|l| l.trim().strip_prefix("compart/config-sha256: "));
    line.unwrap().to_string()
}

#[test]
fn pods_restart_when_the_program_or_the_deployment_changes() {
    let before = generate(DEPLOYMENT, &opts()).unwrap();
    let hash = |files: &[(String, String)]| -> Vec<String> {
        files
            .iter()
            .filter(|(n, _)| n.starts_with("statefulset-") || n == LOAD_JOB_FILE)
            .map(|(_, c)| c.lines().find(|l| l.contains("compart/config-sha256:")).unwrap().to_string())
            .collect()
    };
    assert_eq!(hash(&before).len(), 3);
    assert!(hash(&before).iter().all(|h| *h == hash(&before)[0]));
    let more = generate(&DEPLOYMENT.replace("relay = 4", "relay = 5"), &opts()).unwrap();
    assert_ne!(hash(&before)[0], hash(&more)[0]);
    let text = format!("{PROGRAM}// a comment\n");
    let commented = manifests(&text, &program(&text), DEPLOYMENT, &opts()).unwrap();
    assert_ne!(hash(&before)[0], hash(&commented)[0]);
}

#[test]
fn paxos_manifests() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let text = std::fs::read_to_string(format!("{dir}/paxos.ded")).unwrap();
    let deployment = std::fs::read_to_string(format!("{dir}/paxos.toml")).unwrap();
    let opts = K8sOptions::new("paxos", "compart:0.1.0", SECRET);
    let files = manifests(&text, &program(&text), &deployment, &opts).unwrap();
    // The ConfigMap's program is the example's text, which its own tests cover.
    let shown: String = files
        .iter()
        .map(|(name, contents)| {
            let contents = match contents.find("  program.ded: |\n") {
                Some(start) => {
                    let end = contents.find("  deployment.toml:").unwrap();
                    format!("{}  program.ded: |\n    <examples/paxos.ded>\n{}", &contents[..start], &contents[end..])
                }
                None => contents.clone(),
            };
            format!("--- {name}\n{contents}")
        })
        .collect();
    // ... and so is its hash.
    let shown = shown.replace(config_hash(&files).as_str(), "<sha-256 of the program and deployment.toml>");
    insta::assert_snapshot!(shown);
}

/// The deployment file of the ConfigMap, as the pods read it.
fn deployment_toml(files: &[(String, String)]) -> String {
    let config = file(files, "configmap.yaml");
    let start = config.find("  deployment.toml: |\n").unwrap() + "  deployment.toml: |\n".len();
    config[start..].lines().map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l))).collect()
}

#[test]
fn nodes_read_every_pods_dns_name_and_the_clients_from_the_generated_file() {
    let files = generate(DEPLOYMENT, &opts()).unwrap();
    let d = Deployment::from_toml(&deployment_toml(&files), &program(PROGRAM)).unwrap();
    let nodes: Vec<String> = d.nodes.iter().map(|n| format!("{} #{} {}", n.name, n.ordinal, n.address)).collect();
    let domain = "demo.default.svc.cluster.local:7000";
    let mut expected = Vec::new();
    for (i, name) in ["0.0", "0.1", "0.2", "1.0", "1.1", "1.2"].iter().enumerate() {
        expected.push(format!("proposer_p2a/{name} #{i} demo-proposer-p2a-{i}.{domain}"));
    }
    for i in 0..4 {
        expected.push(format!("relay/{i} #{i} demo-relay-{i}.{domain}"));
    }
    assert_eq!(nodes, expected);
    assert_eq!(
        d.client.as_ref().map(|c| c.to_string()).as_deref(),
        Some("demo-load-0.demo.default.svc.cluster.local:7900")
    );
    assert!(d.needs_secret());
}
