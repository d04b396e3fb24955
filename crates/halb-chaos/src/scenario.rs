//! The drill scenario file: parsed and validated before anything runs, so a
//! bad file fails with the key that is wrong and never half-runs a drill.

use std::time::Duration;

use halb_config::parse_duration;
use toml_edit::{DocumentMut, Item, TableLike, Value};

use crate::fault::{FaultRequest, PoolTarget};

/// Why a scenario was refused; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ScenarioError {
    /// The key path, e.g. `step[2].at`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ScenarioError {
    ScenarioError {
        key: key.into(),
        message: message.into(),
    }
}

/// The longest a drill may run: a game day, not a soak test.
pub const MAX_DRILL: Duration = Duration::from_secs(60 * 60);

/// How long a request may take before the load counts it failed when the
/// scenario does not say (wrk's default).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A validated drill.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Names the report.
    pub name: String,
    /// How long the load runs.
    pub duration: Duration,
    /// Picks among `random` steps; `None`: one is drawn and reported.
    pub seed: Option<u64>,
    /// Target URLs, used in turn.
    pub urls: Vec<String>,
    /// Requests per second (open loop).
    pub rate: u32,
    /// Connections the load spreads over.
    pub concurrency: u32,
    /// A request not answered within this is failed.
    pub timeout: Duration,
    /// Share of 2xx/3xx answers that passes.
    pub slo_success: f64,
    /// Largest p99 that passes.
    pub slo_p99: Duration,
    /// Admin endpoints to watch.
    pub nodes: Vec<Node>,
    /// Steps in file order.
    pub steps: Vec<Step>,
}

/// A node's admin endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// How the report names it: `name`, else the admin address.
    pub name: String,
    /// `http://host:port`.
    pub admin: String,
    /// The admin API's bearer token.
    pub token: Option<String>,
}

/// One timed step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// When it runs, from the start of the load.
    pub at: Duration,
    /// What it may do: one action, or (with `random`) one drawn from several.
    pub choices: Vec<Target>,
    /// Whether the step was written as `random = [...]`.
    pub random: bool,
}

/// An action and the nodes it is sent to.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub action: Action,
    /// Index into [`Scenario::nodes`]; `None`: every node (for `api` and
    /// `fault`; `exec` runs here).
    pub node: Option<usize>,
}

impl Node {
    /// `host:port` of the admin endpoint, to connect to.
    pub fn authority(&self) -> &str {
        self.admin.trim_start_matches("http://")
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A shell command (`sh -c`).
    Exec(String),
    /// `METHOD PATH` on the node admins.
    Api { method: String, path: String },
    /// The body of `POST /api/v1/faults`.
    Fault(serde_json::Value),
}

impl Action {
    /// `exec`, `api` or `fault`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Exec(_) => "exec",
            Action::Api { .. } => "api",
            Action::Fault(_) => "fault",
        }
    }

    /// What it does, in one line.
    pub fn describe(&self) -> String {
        match self {
            Action::Exec(command) => command.clone(),
            Action::Api { method, path } => format!("{method} {path}"),
            Action::Fault(body) => body.to_string(),
        }
    }
}

fn only_keys(t: &dyn TableLike, path: &str, allowed: &[&str]) -> Result<(), ScenarioError> {
    for (k, _) in t.iter() {
        if !allowed.contains(&k) {
            return Err(err(
                format!("{path}{k}"),
                format!("unknown key (expected one of {})", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

fn string(t: &dyn TableLike, path: &str, key: &str) -> Result<Option<String>, ScenarioError> {
    match t.get(key) {
        None => Ok(None),
        Some(i) => i
            .as_str()
            .map(|s| Some(s.to_owned()))
            .ok_or_else(|| err(format!("{path}{key}"), "expected a string")),
    }
}

fn duration_key(t: &dyn TableLike, path: &str, key: &str) -> Result<Duration, ScenarioError> {
    let s = string(t, path, key)?.ok_or_else(|| err(format!("{path}{key}"), "missing"))?;
    parse_duration(&s).map_err(|m| err(format!("{path}{key}"), m))
}

fn table<'a>(doc: &'a dyn TableLike, key: &str) -> Result<&'a dyn TableLike, ScenarioError> {
    doc.get(key)
        .and_then(Item::as_table_like)
        .ok_or_else(|| err(key, "missing table"))
}

/// A TOML value as JSON (the faults API's body).
fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::String(s) => s.value().clone().into(),
        Value::Integer(i) => (*i.value()).into(),
        Value::Float(f) => (*f.value()).into(),
        Value::Boolean(b) => (*b.value()).into(),
        Value::Datetime(d) => d.value().to_string().into(),
        Value::Array(a) => a.iter().map(to_json).collect(),
        Value::InlineTable(t) => t
            .iter()
            .map(|(k, v)| (k.to_owned(), to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// Checks a fault's body as far as it can without the node: the node
/// checks the pool and backend it names.
fn fault_body(item: &Item, key: &str) -> Result<serde_json::Value, ScenarioError> {
    let table = item
        .as_value()
        .filter(|v| v.is_inline_table())
        .ok_or_else(|| err(key, "expected an inline table such as { pool = \"app\", kind = \"abort\", value = 503, duration = \"3s\" }"))?;
    let body = to_json(table);
    let request = FaultRequest::from_json(body.to_string().as_bytes())
        .map_err(|e| err(key, e.to_string()))?;
    let backends: Vec<_> = request
        .backend
        .as_deref()
        .and_then(|b| b.parse().ok())
        .into_iter()
        .collect();
    request
        .validate(
            |_| {
                Some(PoolTarget {
                    http: true,
                    backends: backends.clone(),
                })
            },
            &[],
        )
        .map_err(|e| err(key, e.to_string()))?;
    Ok(body)
}

/// One action from a `[[step]]` or an entry of its `random` list.
fn target(t: &dyn TableLike, p: &str, nodes: &[Node]) -> Result<Target, ScenarioError> {
    let mut actions = Vec::new();
    if let Some(c) = string(t, p, "exec")? {
        actions.push(Action::Exec(c));
    }
    if let Some(c) = string(t, p, "api")? {
        let (method, path) = c
            .split_once(' ')
            .filter(|(m, path)| {
                !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) && path.starts_with('/')
            })
            .ok_or_else(|| {
                err(
                    format!("{p}api"),
                    format!("expected \"METHOD /path\", got {c:?}"),
                )
            })?;
        actions.push(Action::Api {
            method: method.to_owned(),
            path: path.trim().to_owned(),
        });
    }
    if let Some(f) = t.get("fault") {
        actions.push(Action::Fault(fault_body(f, &format!("{p}fault"))?));
    }
    if actions.len() != 1 {
        return Err(err(
            p.trim_end_matches('.'),
            "needs exactly one of exec, api, fault",
        ));
    }
    let node = match string(t, p, "node")? {
        None => None,
        Some(n) => Some(
            nodes
                .iter()
                .position(|node| node.name == n || node.admin == n)
                .ok_or_else(|| {
                    let known: Vec<_> = nodes.iter().map(|n| n.name.as_str()).collect();
                    err(
                        format!("{p}node"),
                        format!("no [[node]] named {n:?} (nodes: {})", known.join(", ")),
                    )
                })?,
        ),
    };
    let action = actions.remove(0);
    if node.is_some() && matches!(action, Action::Exec(_)) {
        return Err(err(
            format!("{p}node"),
            "an exec step runs where the drill runs; node applies to api and fault",
        ));
    }
    Ok(Target { action, node })
}

/// `http://host:port` with nothing after it but an optional `/`.
fn admin_url(url: &str) -> bool {
    halb_config::WebhookUrl::parse_plain(url).is_ok_and(|u| u.path == "/")
}

/// Parses and validates a scenario file's text.
pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    let doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| err("(file)", e.to_string()))?;
    let root = doc.as_table();
    only_keys(
        root,
        "",
        &["name", "duration", "seed", "load", "slo", "node", "step"],
    )?;
    let name = string(root, "", "name")?.ok_or_else(|| err("name", "missing"))?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(err(
            "name",
            format!("{name:?}: use letters, digits, '-', '_' or '.'"),
        ));
    }
    let duration = duration_key(root, "", "duration")?;
    if duration.is_zero() || duration > MAX_DRILL {
        return Err(err("duration", "expected more than 0 and at most 1h"));
    }
    let seed = match root.get("seed") {
        None => None,
        Some(i) => Some(
            i.as_integer()
                .filter(|s| *s >= 0)
                .ok_or_else(|| err("seed", "expected a non-negative integer"))? as u64,
        ),
    };
    let load = table(root, "load")?;
    only_keys(
        load,
        "load.",
        &["url", "urls", "rate", "concurrency", "timeout"],
    )?;
    let mut urls = Vec::new();
    if let Some(u) = string(load, "load.", "url")? {
        urls.push(u);
    }
    if let Some(a) = load.get("urls") {
        let a = a
            .as_array()
            .ok_or_else(|| err("load.urls", "expected an array of URLs"))?;
        for v in a.iter() {
            urls.push(
                v.as_str()
                    .ok_or_else(|| err("load.urls", "expected an array of URLs"))?
                    .to_owned(),
            );
        }
    }
    if urls.is_empty() {
        return Err(err("load.url", "missing (url or urls)"));
    }
    for u in &urls {
        if let Err(message) = halb_config::WebhookUrl::parse_plain(u) {
            return Err(err("load.url", message));
        }
    }
    let int = |t: &dyn TableLike, k: &str, p: &str| -> Result<u32, ScenarioError> {
        let v = t
            .get(k)
            .and_then(Item::as_integer)
            .ok_or_else(|| err(format!("{p}{k}"), "missing integer"))?;
        if !(1..=100_000).contains(&v) {
            return Err(err(
                format!("{p}{k}"),
                format!("{v} is out of range (1..=100000)"),
            ));
        }
        Ok(v as u32)
    };
    let rate = int(load, "rate", "load.")?;
    let concurrency = int(load, "concurrency", "load.")?;
    if concurrency > 10_000 {
        return Err(err(
            "load.concurrency",
            "at most 10000 (each is a connection)",
        ));
    }
    let timeout = match load.get("timeout") {
        None => DEFAULT_REQUEST_TIMEOUT,
        Some(_) => duration_key(load, "load.", "timeout")?,
    };
    if timeout.is_zero() {
        return Err(err("load.timeout", "must be more than 0"));
    }
    let slo = table(root, "slo")?;
    only_keys(slo, "slo.", &["success", "p99"])?;
    let slo_success = slo
        .get("success")
        .and_then(|i| i.as_float().or(i.as_integer().map(|n| n as f64)))
        .ok_or_else(|| err("slo.success", "missing number"))?;
    if !(0.0..=1.0).contains(&slo_success) {
        return Err(err("slo.success", "must be between 0 and 1"));
    }
    let slo_p99 = duration_key(slo, "slo.", "p99")?;
    let mut nodes: Vec<Node> = Vec::new();
    if let Some(n) = root.get("node") {
        let a = n
            .as_array_of_tables()
            .ok_or_else(|| err("node", "expected [[node]] tables"))?;
        for (i, n) in a.iter().enumerate() {
            let p = format!("node[{i}].");
            only_keys(n, &p, &["name", "admin", "token"])?;
            let admin =
                string(n, &p, "admin")?.ok_or_else(|| err(format!("{p}admin"), "missing"))?;
            if !admin_url(&admin) {
                return Err(err(
                    format!("{p}admin"),
                    format!("{admin:?} is not an http://host:port address"),
                ));
            }
            let admin = admin.trim_end_matches('/').to_owned();
            let name = string(n, &p, "name")?
                .unwrap_or_else(|| admin.trim_start_matches("http://").to_owned());
            if nodes.iter().any(|n| n.name == name) {
                return Err(err(format!("{p}name"), format!("{name:?} is used twice")));
            }
            nodes.push(Node {
                name,
                admin,
                token: string(n, &p, "token")?,
            });
        }
    }
    let mut steps = Vec::new();
    if let Some(a) = root.get("step") {
        let a = a
            .as_array_of_tables()
            .ok_or_else(|| err("step", "expected [[step]] tables"))?;
        for (i, s) in a.iter().enumerate() {
            let p = format!("step[{i}].");
            only_keys(s, &p, &["at", "exec", "api", "fault", "node", "random"])?;
            let at = duration_key(s, &p, "at")?;
            if at > duration {
                return Err(err(format!("{p}at"), "is past the drill's duration"));
            }
            let (choices, random) = match s.get("random") {
                None => (vec![target(s, &p, &nodes)?], false),
                Some(r) => {
                    only_keys(s, &p, &["at", "random"]).map_err(|e| {
                        err(e.key, "a random step holds its actions in the list only")
                    })?;
                    let list = r.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
                        err(
                            format!("{p}random"),
                            "expected a list of steps such as [{ exec = \"...\" }, { api = \"...\" }]",
                        )
                    })?;
                    let mut choices = Vec::new();
                    for (j, entry) in list.iter().enumerate() {
                        let q = format!("{p}random[{j}].");
                        let t = entry.as_inline_table().ok_or_else(|| {
                            err(q.trim_end_matches('.'), "expected an inline table")
                        })?;
                        only_keys(t, &q, &["exec", "api", "fault", "node"])?;
                        choices.push(target(t, &q, &nodes)?);
                    }
                    (choices, true)
                }
            };
            let needs_node = choices.iter().any(|c| !matches!(c.action, Action::Exec(_)));
            if needs_node && nodes.is_empty() {
                return Err(err(
                    p.trim_end_matches('.'),
                    "api and fault steps need a [[node]] to send to",
                ));
            }
            steps.push(Step {
                at,
                choices,
                random,
            });
        }
    }
    Ok(Scenario {
        name,
        duration,
        seed,
        urls,
        rate,
        concurrency,
        timeout,
        slo_success,
        slo_p99,
        nodes,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "name = \"k\"\nduration = \"10s\"\n[load]\nurl = \"http://127.0.0.1:8080/\"\nrate = 100\nconcurrency = 4\n[slo]\nsuccess = 0.999\np99 = \"500ms\"\n[[node]]\nname = \"lb1\"\nadmin = \"http://127.0.0.1:9900\"\n[[step]]\nat = \"5s\"\nexec = \"true\"\n";

    fn key(text: &str) -> String {
        parse(text).unwrap_err().key
    }

    #[test]
    fn parses_a_scenario() {
        let s = parse(OK).unwrap();
        assert_eq!(s.rate, 100);
        assert_eq!(s.timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(s.nodes[0].name, "lb1");
        assert_eq!(s.steps[0].choices[0].action, Action::Exec("true".into()));
    }

    #[test]
    fn names_the_bad_key() {
        assert_eq!(key(&OK.replace("rate = 100", "rate = 0")), "load.rate");
        assert_eq!(
            key(&OK.replace("at = \"5s\"", "at = \"50s\"")),
            "step[0].at"
        );
        assert_eq!(key(&format!("{OK}bogus = 1\n")), "step[0].bogus");
        assert_eq!(key(&OK.replace("exec = \"true\"", "")), "step[0]");
        assert_eq!(
            key(&OK.replace("exec = \"true\"", "api = \"drain it\"")),
            "step[0].api"
        );
        assert_eq!(
            key(&OK.replace("http://127.0.0.1:8080/", "https://x/")),
            "load.url"
        );
        assert_eq!(
            key(&OK.replace("exec = \"true\"", "api = \"GET /\"\nnode = \"lb9\"")),
            "step[0].node"
        );
    }

    #[test]
    fn a_fault_is_checked_before_the_drill() {
        let with = |fault: &str| OK.replace("exec = \"true\"", &format!("fault = {fault}"));
        let s = parse(&with(
            "{ pool = \"app\", kind = \"abort\", value = 503, duration = \"3s\" }",
        ))
        .unwrap();
        assert_eq!(
            s.steps[0].choices[0].action,
            Action::Fault(
                serde_json::json!({"pool": "app", "kind": "abort", "value": 503, "duration": "3s"})
            )
        );
        let e = parse(&with(
            "{ pool = \"app\", kind = \"slow\", duration = \"3s\" }",
        ))
        .unwrap_err();
        assert_eq!(e.key, "step[0].fault");
        assert!(e.message.contains("unknown kind"), "{e}");
        let e = parse(&with(
            "{ pool = \"app\", kind = \"abort\", value = 503, duration = \"2h\" }",
        ))
        .unwrap_err();
        assert!(e.message.contains("at most 1h"), "{e}");
    }

    #[test]
    fn random_steps_list_their_choices() {
        let text = OK.replace(
            "exec = \"true\"",
            "random = [{ exec = \"kill a\" }, { api = \"POST /api/v1/pools/app/backends/127.0.0.1:1/drain\", node = \"lb1\" }]",
        );
        let s = parse(&text).unwrap();
        assert!(s.steps[0].random);
        assert_eq!(s.steps[0].choices.len(), 2);
        assert_eq!(s.steps[0].choices[1].node, Some(0));
        assert_eq!(
            key(&OK.replace("exec = \"true\"", "random = []")),
            "step[0].random"
        );
        assert_eq!(
            key(&OK.replace(
                "exec = \"true\"",
                "random = [{ exec = \"a\", at = \"1s\" }]"
            )),
            "step[0].random[0].at"
        );
    }
}

#[cfg(test)]
mod shipped {
    #[test]
    fn every_shipped_drill_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../drills");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&p).unwrap();
                super::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 5, "{n} drills in {dir}");
    }
}
