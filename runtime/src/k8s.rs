//! Kubernetes manifests for a program and its deployment file (`compart deploy k8s`).
//!
//! Pure text generation: [`manifests`] takes the program, the deployment file and the options and
//! returns (file name, contents) pairs; the CLI writes them. What is generated, and why each
//! setting is what it is, is in docs/deploying.md ("Kubernetes"):
//!
//! - `configmap.yaml`: the program and a deployment file that places every node at its pod's
//!   stable DNS name (`<prefix>-<component>-{n}.<prefix>.<namespace>.svc.<domain>`, port
//!   [`NODE_PORT`]) and the load client at `<prefix>-load-0...:`[`CLIENT_PORT`];
//! - `secret.yaml`: the cluster key, which pods read from a mounted file
//!   (`COMPART_CLUSTER_SECRET_FILE`), never from their command line;
//! - `service.yaml`: the headless Service `<prefix>` that gives every pod its DNS name;
//! - `networkpolicy.yaml`: node and client ports open only to the deployment's own pods;
//! - `statefulset-<component>.yaml`: one StatefulSet per component, replicas = instances x
//!   partitions;
//! - `kustomization.yaml`: all of the above, for `kubectl apply -k`;
//! - [`LOAD_JOB_FILE`]: a Job running `compart load` from the client's address; not in the
//!   kustomization, applied by hand to drive a workload.

use std::fmt::{self, Write as _};

use compart_analysis::model::{Program, RelationKind};
use sha2::{Digest, Sha256};

use crate::deploy::Deployment;

/// The port every node listens on inside its pod (each pod has its own address).
pub const NODE_PORT: u16 = 7000;
/// The port of `--health` (`/healthz`, `/readyz`).
pub const HEALTH_PORT: u16 = 8080;
/// The port the load client listens on for the nodes' outputs.
pub const CLIENT_PORT: u16 = 7900;
/// The file of the load Job, which `kustomization.yaml` does not list.
pub const LOAD_JOB_FILE: &str = "load-job.yaml";
pub const DEFAULT_NAMESPACE: &str = "default";
pub const DEFAULT_CPU: &str = "100m";
pub const DEFAULT_MEMORY: &str = "128Mi";
pub const DEFAULT_STORAGE: &str = "1Gi";
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// Where the pods find what the ConfigMap and the Secret hold.
const CONFIG_DIR: &str = "/etc/compart";
const SECRET_DIR: &str = "/etc/compart-secret";
const SECRET_KEY: &str = "cluster-secret";
const DATA_DIR: &str = "/var/lib/compart";
/// The user the Containerfile creates; pods run as it.
const UID: u32 = 10001;
/// A StatefulSet's pods carry the label `controller-revision-hash: <name>-<hash of up to 10
/// characters>`, and a label value has at most 63 characters, so a longer StatefulSet name makes
/// pods that can never be created (kubernetes/kubernetes#64023).
const MAX_STATEFULSET_NAME: usize = 52;
const MAX_LABEL: usize = 63;
/// A ConfigMap holds at most 1 MiB.
const MAX_CONFIG_BYTES: usize = 1 << 20;

#[derive(Clone, Debug)]
pub struct K8sOptions {
    /// Prefix of every object's name and the headless Service's name (a DNS-1035 label).
    pub name: String,
    pub namespace: String,
    pub image: String,
    /// CPU per node: the request, and also the limit when given (`None`: [`DEFAULT_CPU`], no limit).
    pub cpu: Option<String>,
    /// Memory per node: the request, and also the limit when given (`None`: [`DEFAULT_MEMORY`]).
    pub memory: Option<String>,
    /// Volume size of each node of a component with tables.
    pub storage: String,
    pub cluster_domain: String,
    /// The cluster key as the nodes use it (the launcher's form: hex of 32 random bytes).
    pub secret: String,
}

impl K8sOptions {
    /// The defaults for a deployment called `name` run from `image` with the key `secret`.
    pub fn new(name: &str, image: &str, secret: &str) -> K8sOptions {
        K8sOptions {
            name: name.to_string(),
            namespace: DEFAULT_NAMESPACE.to_string(),
            image: image.to_string(),
            cpu: None,
            memory: None,
            storage: DEFAULT_STORAGE.to_string(),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
            secret: secret.to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct K8sError {
    pub message: String,
}

impl fmt::Display for K8sError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for K8sError {}

fn err(message: impl Into<String>) -> K8sError {
    K8sError { message: message.into() }
}

/// `text` as a DNS-1123 label as far as it can be made one: lowercase, every character other than
/// a letter, digit or `-` replaced by `-`, no `-` at either end (`proposer_p2a` -> `proposer-p2a`,
/// `Paxos.optimized` -> `paxos-optimized`). May return an empty string; lengths are not checked.
pub fn dns_label(text: &str) -> String {
    let mapped: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    mapped.trim_matches('-').to_string()
}

/// Checks that `name` is a DNS-1035 label (what a Service name must be): 1 to `max` lowercase
/// letters, digits and `-`, starting with a letter and ending with a letter or digit.
fn check_dns_label(what: &str, name: &str, max: usize) -> Result<(), K8sError> {
    let valid_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let starts = name.starts_with(|c: char| c.is_ascii_lowercase());
    let ends = name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(valid_chars && starts && ends) {
        return Err(err(format!(
            "{what} `{name}` is not a DNS label: use lowercase letters, digits and `-`, starting with a letter and ending with a letter or digit"
        )));
    }
    if name.len() > max {
        return Err(err(format!("{what} `{name}` has {} characters; at most {max} are allowed", name.len())));
    }
    Ok(())
}

/// Checks a resource quantity (`100m`, `0.5`, `128Mi`, `1Gi`, `2e3`).
fn check_quantity(what: &str, q: &str) -> Result<(), K8sError> {
    const SUFFIXES: [&str; 13] = ["", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi"];
    let digits_end = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(digits_end);
    let number_ok = !number.is_empty() && number != "." && number.matches('.').count() <= 1;
    let exponent_ok = suffix
        .strip_prefix(['e', 'E'])
        .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
        .is_some_and(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_digit()));
    if number_ok && (SUFFIXES.contains(&suffix) || exponent_ok) {
        Ok(())
    } else {
        Err(err(format!(
            "{what} `{q}` is not a Kubernetes quantity (e.g. 100m, 0.5, 2 for CPU; 128Mi, 1Gi for memory)"
        )))
    }
}

/// One component as the manifests run it.
struct Plan {
    /// The name in the program (what `--component` takes).
    component: String,
    /// `<prefix>-<component as a DNS label>`: the StatefulSet, and with `-<ordinal>` each pod.
    statefulset: String,
    dns: String,
    instances: u32,
    partitions: u32,
    /// The component declares tables: its nodes keep them on a PersistentVolumeClaim.
    tables: bool,
}

impl Plan {
    fn replicas(&self) -> u32 {
        self.instances * self.partitions
    }
}

/// The deployment's pods and names, checked against Kubernetes' limits.
struct Names<'a> {
    opts: &'a K8sOptions,
    plans: Vec<Plan>,
}

impl Names<'_> {
    /// `<prefix>.<namespace>.svc.<domain>`: the domain of every pod's DNS name.
    fn domain(&self) -> String {
        format!("{}.{}.svc.{}", self.opts.name, self.opts.namespace, self.opts.cluster_domain)
    }
    fn load_hostname(&self) -> String {
        format!("{}-load-0", self.opts.name)
    }
    fn client(&self) -> String {
        format!("{}.{}:{CLIENT_PORT}", self.load_hostname(), self.domain())
    }
    fn config_map(&self) -> String {
        format!("{}-config", self.opts.name)
    }
    fn secret(&self) -> String {
        format!("{}-cluster-secret", self.opts.name)
    }
}

fn plan<'a>(program: &Program, deployment: &Deployment, opts: &'a K8sOptions) -> Result<Names<'a>, K8sError> {
    check_dns_label("--name", &opts.name, MAX_LABEL)?;
    check_dns_label("--namespace", &opts.namespace, MAX_LABEL)?;
    let domain_ok = !opts.cluster_domain.is_empty()
        && opts.cluster_domain.split('.').all(|l| check_dns_label("a cluster domain label", l, MAX_LABEL).is_ok());
    if !domain_ok {
        return Err(err(format!("--cluster-domain `{}` is not a DNS domain", opts.cluster_domain)));
    }
    if opts.image.is_empty() || opts.image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(format!("--image `{}` is not an image reference", opts.image)));
    }
    check_quantity("--cpu", opts.cpu.as_deref().unwrap_or(DEFAULT_CPU))?;
    check_quantity("--memory", opts.memory.as_deref().unwrap_or(DEFAULT_MEMORY))?;
    check_quantity("--storage", &opts.storage)?;

    let mut plans: Vec<Plan> = Vec::new();
    for c in program.component_ids() {
        let component = &program.component(c).name;
        let nodes: Vec<_> = deployment.nodes.iter().filter(|n| n.component == c).collect();
        let instances = nodes.iter().filter(|n| n.partition == 0).count() as u32;
        let partitions = nodes.first().map_or(1, |n| n.partitions);
        let dns = dns_label(component);
        if dns.is_empty() {
            return Err(err(format!("component `{component}` has no letter or digit to name its pods with")));
        }
        if let Some(other) = plans.iter().find(|p| p.dns == dns) {
            return Err(err(format!(
                "components `{}` and `{component}` both make the DNS name `{dns}` (lowercase, `_` as `-`): rename one",
                other.component
            )));
        }
        if dns == "load" {
            return Err(err(format!(
                "component `{component}`: its pods would be named like the load client's (`{}-load-0`); rename the component",
                opts.name
            )));
        }
        let statefulset = format!("{}-{dns}", opts.name);
        if statefulset.len() > MAX_STATEFULSET_NAME {
            return Err(err(format!(
                "the StatefulSet of component `{component}` would be `{statefulset}`, {} characters; Kubernetes allows at most {MAX_STATEFULSET_NAME} (its pods carry a label of the name plus 11 characters, at most 63): give a shorter --name",
                statefulset.len()
            )));
        }
        let tables = program.component(c).relations.iter().any(|&r| program.relation(r).kind == RelationKind::Table);
        plans.push(Plan { component: component.clone(), statefulset, dns, instances, partitions, tables });
    }
    let names = Names { opts, plans };
    // A DNS name has at most 253 characters; the longest is that of the highest ordinal.
    for p in &names.plans {
        let longest = format!("{}-{}.{}", p.statefulset, p.replicas().saturating_sub(1), names.domain());
        if longest.len() > 253 {
            return Err(err(format!(
                "the DNS name `{longest}` has {} characters; at most 253 are allowed: give a shorter --name, --namespace or --cluster-domain",
                longest.len()
            )));
        }
    }
    Ok(names)
}

/// The manifests of `program` (whose text is `program_text`) deployed as `deployment_text`
/// says, as (file name, contents) pairs in a fixed order: `kustomization.yaml` first, the
/// load Job ([`LOAD_JOB_FILE`]) last.
pub fn manifests(
    program_text: &str,
    program: &Program,
    deployment_text: &str,
    opts: &K8sOptions,
) -> Result<Vec<(String, String)>, K8sError> {
    let deployment = Deployment::from_toml(deployment_text, program).map_err(|e| err(format!("deployment: {e}")))?;
    let names = plan(program, &deployment, opts)?;
    if names.plans.iter().all(|p| p.replicas() == 0) {
        return Err(err("the deployment runs no node"));
    }
    if opts.secret.is_empty() || opts.secret.chars().any(|c| c.is_control()) {
        return Err(err("the cluster secret must be non-empty text without control characters"));
    }
    let deployment_toml = deployment_file(deployment_text, &names)?;
    if program_text.len() + deployment_toml.len() > MAX_CONFIG_BYTES - 4096 {
        return Err(err(format!(
            "the program and deployment file are {} bytes; a ConfigMap holds at most 1 MiB",
            program_text.len() + deployment_toml.len()
        )));
    }
    // Pods restart when the program or the deployment changes (and a durable node then refuses
    // its log of the old program: see docs/deploying.md).
    let mut hash = Sha256::new();
    hash.update(program_text.as_bytes());
    hash.update([0]);
    hash.update(deployment_toml.as_bytes());
    let config_hash = crate::hex(&hash.finalize());

    let mut files = vec![
        ("configmap.yaml".to_string(), config_map(&names, program_text, &deployment_toml)),
        ("secret.yaml".to_string(), secret(&names)),
        ("service.yaml".to_string(), service(&names)),
        ("networkpolicy.yaml".to_string(), network_policy(&names)),
    ];
    for p in &names.plans {
        files.push((format!("statefulset-{}.yaml", p.dns), statefulset(&names, p, &config_hash)));
    }
    let mut kustomization = String::from(
        "# Generated by `compart deploy k8s`. Apply with `kubectl apply -k .`; the load Job\n\
         # (load-job.yaml) is not listed: apply it to drive a workload.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for (file, _) in &files {
        let _ = writeln!(kustomization, "  - {file}");
    }
    files.insert(0, ("kustomization.yaml".to_string(), kustomization));
    files.push((LOAD_JOB_FILE.to_string(), load_job(&names, &config_hash)));
    Ok(files)
}

/// The deployment file the pods read: `deployment_text` with every component placed at its
/// pods' DNS names and port, and the client at the load Job's. Other settings (`base_port`,
/// `[workload]`, ...) are kept; placements already in the file are replaced.
fn deployment_file(deployment_text: &str, names: &Names) -> Result<String, K8sError> {
    let mut doc: toml::Table =
        deployment_text.parse().map_err(|e: toml::de::Error| err(format!("deployment: invalid TOML: {e}")))?;
    for key in ["components", "partitions", "client"] {
        doc.remove(key);
    }
    let (scalars, tables): (toml::Table, toml::Table) = doc.into_iter().partition(|(_, v)| !v.is_table());
    let to_toml = |t: &toml::Table| toml::to_string(t).map_err(|e| err(format!("deployment: {e}")));
    let mut out = String::from(
        "# Generated by `compart deploy k8s`: the deployment file with every node placed at its pod's\n\
         # DNS name (`{n}`: the pod's ordinal) and the load client at the load Job's.\n",
    );
    out.push_str(&to_toml(&scalars)?);
    let _ = writeln!(out, "client = {}", toml::Value::String(names.client()));
    out.push_str("\n[components]\n");
    for p in &names.plans {
        let partitions = if p.partitions > 1 { format!(", partitions = {}", p.partitions) } else { String::new() };
        let host = toml::Value::String(format!("{}-{{n}}.{}", p.statefulset, names.domain()));
        let _ = writeln!(
            out,
            "{} = {{ instances = {}{partitions}, host = {host}, port = {NODE_PORT} }}",
            p.component, p.instances
        );
    }
    if !tables.is_empty() {
        out.push('\n');
        out.push_str(&to_toml(&tables)?);
    }
    Ok(out)
}

/// A YAML scalar: plain when that cannot be read as anything but this string, else double-quoted
/// (JSON's escapes are YAML's).
fn scalar(s: &str) -> String {
    const SPECIAL: [&str; 12] = ["y", "n", "yes", "no", "true", "false", "on", "off", "null", "~", "nan", "inf"];
    let first_ok = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        || s.strip_prefix("--").is_some_and(|f| f.starts_with(|c: char| c.is_ascii_alphabetic()));
    let plain = first_ok
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

/// `text` as the value of a mapping key at `indent` spaces: a literal block when YAML keeps it
/// byte for byte, else a double-quoted string.
fn text_block(text: &str, indent: usize) -> String {
    // The first line with text sets the block's indentation, so it may not start with blanks.
    let literal_ok = text.lines().find(|l| !l.is_empty()).is_some_and(|first| !first.starts_with([' ', '\t']))
        && !text.chars().any(|c| {
            (c.is_control() && c != '\n' && c != '\t')
                || c == '\u{feff}'
                || c == '\u{85}'
                || c == '\u{2028}'
                || c == '\u{2029}'
        })
        && !text.lines().any(|l| l.trim().is_empty() && !l.is_empty());
    if !literal_ok {
        return scalar_quoted(text);
    }
    // Chomping: `|-` no final newline, `|` one, `|+` more.
    let trailing = text.len() - text.trim_end_matches('\n').len();
    let indicator = match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    };
    let pad = " ".repeat(indent);
    let mut out = format!("{indicator}\n");
    for line in text.trim_end_matches('\n').split('\n') {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{pad}{line}");
        }
    }
    for _ in 1..trailing {
        out.push('\n');
    }
    out.pop();
    out
}

fn scalar_quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `metadata:` of an object called `name`, at two spaces, with the deployment's labels.
fn metadata(names: &Names, name: &str, component: Option<&str>) -> String {
    let mut out =
        format!("metadata:\n  name: {}\n  namespace: {}\n  labels:\n", scalar(name), scalar(&names.opts.namespace));
    out.push_str(&labels(names, component, 4));
    out
}

/// The labels of the deployment's objects and pods; `component` also selects one StatefulSet's pods.
fn labels(names: &Names, component: Option<&str>, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = format!(
        "{pad}app.kubernetes.io/name: compart\n{pad}app.kubernetes.io/instance: {}\n",
        scalar(&names.opts.name)
    );
    if let Some(c) = component {
        let _ = writeln!(out, "{pad}app.kubernetes.io/component: {}", scalar(c));
    }
    out
}

fn config_map(names: &Names, program_text: &str, deployment_toml: &str) -> String {
    format!(
        "# The program and its deployment file, mounted at {CONFIG_DIR} in every pod.\n\
         apiVersion: v1\nkind: ConfigMap\n{}data:\n  program.ded: {}\n  deployment.toml: {}\n",
        metadata(names, &names.config_map(), None),
        text_block(program_text, 4),
        text_block(deployment_toml, 4),
    )
}

fn secret(names: &Names) -> String {
    format!(
        "# The cluster key every node and the load client authenticate with. Generated at random by\n\
         # `compart deploy k8s`: do not commit this file (see docs/deploying.md).\n\
         apiVersion: v1\nkind: Secret\n{}type: Opaque\nstringData:\n  {SECRET_KEY}: {}\n",
        metadata(names, &names.secret(), None),
        scalar_quoted(&names.opts.secret),
    )
}

fn service(names: &Names) -> String {
    format!(
        "# Headless: no virtual IP, one DNS name per pod (<pod>.{name}.{ns}.svc.{domain}). Not-ready\n\
         # pods are published too, because a node becomes ready only once it reaches every other one.\n\
         apiVersion: v1\nkind: Service\n{}spec:\n  clusterIP: None\n  publishNotReadyAddresses: true\n  selector:\n{}  ports:\n    - name: peer\n      port: {NODE_PORT}\n      targetPort: peer\n    - name: client\n      port: {CLIENT_PORT}\n      targetPort: client\n",
        metadata(names, &names.opts.name, None),
        labels(names, None, 4),
        name = names.opts.name,
        ns = names.opts.namespace,
        domain = names.opts.cluster_domain,
    )
}

fn network_policy(names: &Names) -> String {
    format!(
        "# Only the deployment's own pods reach the node and client ports (the handshake also needs\n\
         # the cluster key, but frames after it are not encrypted: docs/security.md). The health port\n\
         # stays open for the kubelet's probes.\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n{}spec:\n  podSelector:\n    matchLabels:\n{}  policyTypes:\n    - Ingress\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels:\n{}      ports:\n        - protocol: TCP\n          port: {NODE_PORT}\n        - protocol: TCP\n          port: {CLIENT_PORT}\n    - ports:\n        - protocol: TCP\n          port: {HEALTH_PORT}\n",
        metadata(names, &names.opts.name, None),
        labels(names, None, 6),
        labels(names, None, 14),
    )
}

/// The pod settings the nodes and the load client share: run as the image's user, no service
/// account token (nothing in a pod talks to the API server), the config and the key mounted.
fn pod_security(indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}automountServiceAccountToken: false\n{pad}enableServiceLinks: false\n{pad}securityContext:\n{pad}  runAsNonRoot: true\n{pad}  runAsUser: {UID}\n{pad}  runAsGroup: {UID}\n{pad}  fsGroup: {UID}\n{pad}  seccompProfile:\n{pad}    type: RuntimeDefault\n"
    )
}

fn container_security(indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}securityContext:\n{pad}  allowPrivilegeEscalation: false\n{pad}  readOnlyRootFilesystem: true\n{pad}  capabilities:\n{pad}    drop:\n{pad}      - ALL\n"
    )
}

fn resources(opts: &K8sOptions, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let cpu = scalar_quoted(opts.cpu.as_deref().unwrap_or(DEFAULT_CPU));
    let memory = scalar_quoted(opts.memory.as_deref().unwrap_or(DEFAULT_MEMORY));
    let mut out = format!("{pad}resources:\n{pad}  requests:\n{pad}    cpu: {cpu}\n{pad}    memory: {memory}\n");
    if opts.cpu.is_some() || opts.memory.is_some() {
        out.push_str(&format!("{pad}  limits:\n"));
        if opts.cpu.is_some() {
            let _ = writeln!(out, "{pad}    cpu: {cpu}");
        }
        if opts.memory.is_some() {
            let _ = writeln!(out, "{pad}    memory: {memory}");
        }
    }
    out
}

/// `args:` at `indent`, one per line.
fn args(list: &[&str], indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = format!("{pad}args:\n");
    for a in list {
        let _ = writeln!(out, "{pad}  - {}", scalar(a));
    }
    out
}

fn env_and_mounts(indent: usize, data: bool) -> String {
    let pad = " ".repeat(indent);
    let mut out = format!(
        "{pad}env:\n{pad}  - name: COMPART_CLUSTER_SECRET_FILE\n{pad}    value: {SECRET_DIR}/{SECRET_KEY}\n{pad}volumeMounts:\n{pad}  - name: config\n{pad}    mountPath: {CONFIG_DIR}\n{pad}    readOnly: true\n{pad}  - name: cluster-secret\n{pad}    mountPath: {SECRET_DIR}\n{pad}    readOnly: true\n"
    );
    if data {
        let _ = write!(out, "{pad}  - name: data\n{pad}    mountPath: {DATA_DIR}\n");
    }
    out
}

/// The ConfigMap and Secret volumes; the key file is readable by the pod's group (fsGroup) only.
fn volumes(names: &Names, indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}volumes:\n{pad}  - name: config\n{pad}    configMap:\n{pad}      name: {}\n{pad}  - name: cluster-secret\n{pad}    secret:\n{pad}      secretName: {}\n{pad}      defaultMode: 288 # 0440\n",
        scalar(&names.config_map()),
        scalar(&names.secret()),
    )
}

fn statefulset(names: &Names, p: &Plan, config_hash: &str) -> String {
    let program = format!("{CONFIG_DIR}/program.ded");
    let deploy = format!("{CONFIG_DIR}/deployment.toml");
    let health = format!("0.0.0.0:{HEALTH_PORT}");
    let node_args = [
        "node",
        &program,
        "--deploy",
        &deploy,
        "--component",
        &p.component,
        "--ordinal",
        "hostname",
        "--health",
        &health,
        "--log-format",
        "json",
        "--durable",
        DATA_DIR,
    ];
    let why = if p.tables {
        format!(
            "# `{}` keeps tables: each node logs them and what it sends to its own volume and\n\
             # recovers from it when restarted or rescheduled.\n",
            p.component
        )
    } else {
        format!(
            "# `{}` has no tables: its log holds only what it sends (so a restarted container repeats\n\
             # nothing) and lives in an emptyDir, which survives container restarts but not rescheduling.\n",
            p.component
        )
    };
    let mut out = format!(
        "# Component `{component}`: {instances} instance(s) x {partitions} partition(s) = {replicas} pod(s),\n\
         # {sts}-0 .. {sts}-{last}. Pods start in parallel: a node is ready only once it reaches\n\
         # every other, so ordered start-up would wait forever.\n{why}\
         apiVersion: apps/v1\nkind: StatefulSet\n{meta}spec:\n  serviceName: {service}\n  replicas: {replicas}\n  podManagementPolicy: Parallel\n  selector:\n    matchLabels:\n{sel}  template:\n    metadata:\n      labels:\n{sel2}      annotations:\n        compart/config-sha256: {config_hash}\n    spec:\n      terminationGracePeriodSeconds: 30\n{pod}      containers:\n        - name: node\n          image: {image}\n          imagePullPolicy: IfNotPresent\n{args}          ports:\n            - name: peer\n              containerPort: {NODE_PORT}\n            - name: health\n              containerPort: {HEALTH_PORT}\n{env}          startupProbe:\n            httpGet:\n              path: /healthz\n              port: health\n            periodSeconds: 2\n            failureThreshold: 300 # 10 minutes to recover a durable log\n          livenessProbe:\n            httpGet:\n              path: /healthz\n              port: health\n            periodSeconds: 10\n            failureThreshold: 3\n          readinessProbe:\n            httpGet:\n              path: /readyz\n              port: health\n            periodSeconds: 2\n            failureThreshold: 3\n{res}{csec}{vols}",
        component = p.component,
        instances = p.instances,
        partitions = p.partitions,
        replicas = p.replicas(),
        sts = p.statefulset,
        last = p.replicas().saturating_sub(1),
        meta = metadata(names, &p.statefulset, Some(&p.dns)),
        service = scalar(&names.opts.name),
        sel = labels(names, Some(&p.dns), 6),
        sel2 = labels(names, Some(&p.dns), 8),
        pod = pod_security(6),
        image = scalar(&names.opts.image),
        args = args(&node_args, 10),
        env = env_and_mounts(10, true),
        res = resources(names.opts, 10),
        csec = container_security(10),
        vols = volumes(names, 6),
    );
    if p.tables {
        let _ = write!(
            out,
            "  volumeClaimTemplates:\n    - metadata:\n        name: data\n      spec:\n        accessModes:\n          - ReadWriteOnce\n        resources:\n          requests:\n            storage: {}\n",
            scalar_quoted(&names.opts.storage)
        );
    } else {
        out.push_str("        - name: data\n          emptyDir: {}\n");
    }
    out
}

fn load_job(names: &Names, config_hash: &str) -> String {
    let program = format!("{CONFIG_DIR}/program.ded");
    let deploy = format!("{CONFIG_DIR}/deployment.toml");
    // Pods may take minutes to be scheduled and pull the image: wait for them rather than fail.
    let load_args = ["load", &program, "--deploy", &deploy, "--ready-timeout", "300"];
    format!(
        "# The load client: drives the deployment file's [workload] through the running nodes and\n\
         # prints the checked report (`kubectl logs job/{name}-load`). Not in kustomization.yaml:\n\
         # apply it to drive a workload; it waits up to 5 minutes for every node to be ready.\n\
         # Its pod is the deployment's `client`:\n\
         # {host}.{domain}:{CLIENT_PORT}.\n\
         apiVersion: batch/v1\nkind: Job\n{meta}spec:\n  backoffLimit: 0\n  template:\n    metadata:\n      labels:\n{labels}      annotations:\n        compart/config-sha256: {config_hash}\n    spec:\n      hostname: {host}\n      subdomain: {service}\n      restartPolicy: Never\n{pod}      containers:\n        - name: load\n          image: {image}\n          imagePullPolicy: IfNotPresent\n{args}          ports:\n            - name: client\n              containerPort: {CLIENT_PORT}\n{env}{res}{csec}{vols}",
        name = names.opts.name,
        host = names.load_hostname(),
        domain = names.domain(),
        meta = metadata(names, &format!("{}-load", names.opts.name), Some("load")),
        labels = labels(names, Some("load"), 8),
        service = scalar(&names.opts.name),
        pod = pod_security(6),
        image = scalar(&names.opts.image),
        args = args(&load_args, 10),
        env = env_and_mounts(10, false),
        res = resources(names.opts, 10),
        csec = container_security(10),
        vols = volumes(names, 6),
    )
}

#[cfg(test)]
mod tests;
