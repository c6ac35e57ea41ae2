//! template.yaml's IAM against the code: each function's role grants exactly the AWS actions that
//! function's code can call. Not one more (least privilege), and not one fewer: a call the role
//! lacks fails only in AWS, where no other test runs.
//!
//! The code side is read from `shared/src`, not listed by hand. A call graph of the record and
//! pipeline layer, from each function's entry points, finds the store and deployer port calls
//! and the transaction items the function builds; the adapters (`store/dynamo.rs`,
//! `deploy/ecs.rs` with `deploy/follow.rs`, `notify/sns.rs`) turn those into SDK operations, and
//! those become IAM actions. What is written by hand is small and below: each function's entry
//! points and wiring, and the documented cases where IAM authorizes an SDK operation as other
//! actions. No AWS, no moto: it reads files.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use imagehook_tests::workspace_root;
use regex::Regex;
use serde_norway::Value;

// ------------------------------------------------------------------------------------------
// What is by hand.
// ------------------------------------------------------------------------------------------

/// One deployed function: its binary, where its code starts, and what `App` wires in for it.
struct Wiring {
    /// `imagehook-<name>` is the binary the template builds (`BuildProperties.Binary`).
    name: &'static str,
    /// (file under shared/src, function) where the function's own work starts.
    entries: &'static [(&'static str, &'static str)],
    /// Whether the function gets an ECS deployer (`App::wire`'s `may_deploy`).
    ecs: bool,
    /// Whether it sends notices (the SNS sink is then reachable).
    notifies: bool,
}

const FUNCTIONS: &[Wiring] = &[
    // pipeline::handle sends push events to push_one and replication events to replicate_one.
    Wiring {
        name: "push",
        entries: &[
            ("pipeline/push.rs", "push_one"),
            ("pipeline/replicate.rs", "replicate_one"),
        ],
        ecs: true,
        notifies: true,
    },
    // App::from_env wires no ECS client for the delete function: it never deploys.
    Wiring {
        name: "delete",
        entries: &[("pipeline/delete.rs", "delete_one")],
        ecs: false,
        notifies: true,
    },
    Wiring {
        name: "quarantine",
        entries: &[("pipeline/quarantine.rs", "quarantine_one")],
        ecs: true,
        notifies: true,
    },
    // App::rollout: the ECS state change is recorded, then at most one notice. App::without_webhooks
    // wires no deployer.
    Wiring {
        name: "outcomes",
        entries: &[("pipeline/rollout.rs", "handle")],
        ecs: false,
        notifies: true,
    },
    // run_images: one history query per request, no notices.
    Wiring {
        name: "images",
        entries: &[("images_api.rs", "handle")],
        ecs: false,
        notifies: false,
    },
];

/// Files of the record and pipeline layer, where the call graph is followed. The adapters below
/// are entered only through their ports (`Store`, `Deployer`), as the code does.
const LAYER: &[&str] = &[
    "pipeline/",
    "store/ledger.rs",
    "store/replication.rs",
    "store/rollouts.rs",
    "store/history.rs",
    "store/keys.rs",
    "store/ops.rs",
    "store/mod.rs",
    "images_api.rs",
];
const DYNAMO_ADAPTER: &[&str] = &["store/dynamo.rs"];
const ECS_ADAPTER: &[&str] = &["deploy/ecs.rs", "deploy/follow.rs"];
const SNS_ADAPTER: &[&str] = &["notify/sns.rs"];

/// TransactWriteItems has no IAM action of its own: DynamoDB authorizes each item as its
/// single-item counterpart ("Using IAM with DynamoDB transactions"). Every `Op` variant must be
/// listed: a new one fails the check until it is.
const TRANSACT_ITEMS: &[(&str, &str)] = &[
    ("Put", "dynamodb:PutItem"),
    ("Update", "dynamodb:UpdateItem"),
    ("Delete", "dynamodb:DeleteItem"),
    ("ConditionCheck", "dynamodb:ConditionCheckItem"),
];

/// SDK operations IAM authorizes as other, or more, actions.
fn authorized_as(service: &str, operation: &str) -> Vec<String> {
    match (service, operation) {
        // "PublishBatch ... requires the sns:Publish permission" (SNS API reference).
        ("sns", "publish_batch") => vec!["sns:Publish".into()],
        // The copied revision keeps the task and execution roles, which the caller must be
        // allowed to pass, and its tags, which ECS authorizes as TagResource on create.
        ("ecs", "register_task_definition") => vec![
            "ecs:RegisterTaskDefinition".into(),
            "ecs:TagResource".into(),
            "iam:PassRole".into(),
        ],
        _ => vec![format!("{service}:{}", pascal(operation))],
    }
}

/// Granted without a call in the code: the Lambda service writes each function's log with the
/// function's role.
const RUNTIME_ONLY: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];

// ------------------------------------------------------------------------------------------
// The source, as far as a call graph needs it.
// ------------------------------------------------------------------------------------------

struct FnDef {
    file: String,
    name: String,
    /// Takes `self`: a method, reached by `.name(`; else reached by `name(` or `path::name(`.
    method: bool,
    /// The body, comments and literals blanked, whitespace around `.`, `::` and `(` removed.
    body: String,
}

/// Comments and the contents of string and char literals removed, and every `#[cfg(test)]` item
/// cut, so that only compiled, non-test code is read.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let rest = |k: usize| c.get(i + k).copied();
        match c[i] {
            '/' if rest(1) == Some('/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if rest(1) == Some('*') => {
                let mut depth = 0;
                while i < c.len() {
                    let next = c.get(i + 1).copied();
                    if c[i] == '/' && next == Some('*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && next == Some('/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            'r' if (rest(1) == Some('"') || rest(1) == Some('#'))
                && (i == 0 || !ident(c[i - 1])) =>
            {
                let mut hashes = 0;
                let mut j = i + 1;
                while c.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if c.get(j) != Some(&'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= c.len() {
                        break;
                    }
                    if c[j] == '"' && (1..=hashes).all(|h| c.get(j + h) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            '"' => {
                let mut j = i + 1;
                while j < c.len() && c[j] != '"' {
                    j += if c[j] == '\\' { 2 } else { 1 };
                }
                out.push_str("\"\"");
                i = j + 1;
            }
            '\'' if rest(1) == Some('\\') => {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
            }
            '\'' if rest(2) == Some('\'') => {
                out.push_str("' '");
                i += 3;
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    cut_test_items(&out)
}

fn cut_test_items(s: &str) -> String {
    let mut s = s.to_owned();
    while let Some(at) = s.find("#[cfg(test)]") {
        let after = at + "#[cfg(test)]".len();
        let Some(stop) = s[after..].find(['{', ';']).map(|k| after + k) else {
            s.truncate(at);
            break;
        };
        let end = if s.as_bytes()[stop] == b';' {
            stop + 1
        } else {
            matching_brace(&s, stop).map_or(s.len(), |e| e + 1)
        };
        s.replace_range(at..end, "");
    }
    s
}

/// The index of the `}` that closes the `{` at `open`.
fn matching_brace(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, b) in s.bytes().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

fn normalize(body: &str) -> String {
    static SPACE: LazyLock<Regex> = LazyLock::new(|| regex(r"\s*(\.|::|\()\s*"));
    SPACE.replace_all(body, "$1").into_owned()
}

fn regex(re: &str) -> Regex {
    Regex::new(re).unwrap()
}

/// Every function with a body in the files under `shared/src` whose paths start with one of
/// `prefixes`.
fn functions_in(prefixes: &[&str]) -> Vec<FnDef> {
    let src = workspace_root().join("shared/src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(&src)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if prefixes.iter().any(|p| rel.starts_with(p)) {
                    files.push((rel, path));
                }
            }
        }
    }
    files.sort();
    let fn_re = regex(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)");
    let self_re = regex(r"\bself\b");
    let mut out = Vec::new();
    for (rel, path) in files {
        let s = strip(&std::fs::read_to_string(path).unwrap());
        for cap in fn_re.captures_iter(&s) {
            let name_end = cap.get(0).unwrap().end();
            let Some(stop) = s[name_end..].find(['{', ';']).map(|k| name_end + k) else {
                continue;
            };
            if s.as_bytes()[stop] == b';' {
                continue; // a declaration (trait method without default)
            }
            let signature = &s[name_end..stop];
            let params = signature
                .find('(')
                .map(|p| &signature[p..])
                .unwrap_or_default();
            let params = params.split("->").next().unwrap_or_default();
            let end = matching_brace(&s, stop).unwrap_or(s.len() - 1);
            out.push(FnDef {
                file: rel.clone(),
                name: cap[1].to_owned(),
                method: self_re.is_match(params),
                body: normalize(&s[stop..=end]),
            });
        }
    }
    out
}

fn file_stem(file: &str) -> &str {
    let base = file.rsplit('/').next().unwrap_or(file);
    if base == "mod.rs" {
        file.rsplit('/').nth(1).unwrap_or(base)
    } else {
        base.trim_end_matches(".rs")
    }
}

fn parent_module(file: &str) -> String {
    let dir = file.rsplit_once('/').map_or("", |(d, _)| d);
    if file.ends_with("/mod.rs") {
        let up = dir.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{up}/mod.rs").trim_start_matches('/').to_owned()
    } else {
        format!("{dir}/mod.rs")
    }
}

/// Which definitions a body's calls may reach: `.name(` a method, `path::name(` the function
/// of that module (or type), `name(` a free function; the caller's own file first.
fn callees(fns: &[FnDef], caller: usize) -> BTreeSet<usize> {
    static CALL: LazyLock<Regex> = LazyLock::new(|| {
        regex(r"((?:[A-Za-z_][A-Za-z0-9_]*::)*)(\.)?([a-z_][A-Za-z0-9_]*)(?:::<[^()]*>)?\(")
    });
    let call_re = &*CALL;
    let me = &fns[caller];
    let mut out = BTreeSet::new();
    for cap in call_re.captures_iter(&me.body) {
        let start = cap.get(0).unwrap().start();
        let dot = cap.get(2).is_some();
        if !dot
            && me.body[..start]
                .chars()
                .next_back()
                .is_some_and(|ch| ch.is_alphanumeric() || ch == '_' || ch == ':')
        {
            continue;
        }
        let path = cap.get(1).map_or("", |m| m.as_str());
        let name = &cap[3];
        let named: Vec<usize> = (0..fns.len()).filter(|&k| fns[k].name == name).collect();
        let same_file = |c: &[usize]| -> Vec<usize> {
            c.iter()
                .copied()
                .filter(|&k| fns[k].file == me.file)
                .collect()
        };
        let found: Vec<usize> = if dot {
            let methods: Vec<usize> = named.into_iter().filter(|&k| fns[k].method).collect();
            let local = same_file(&methods);
            if local.is_empty() { methods } else { local }
        } else if let Some(last) = path.trim_end_matches("::").rsplit("::").next()
            && !last.is_empty()
        {
            match last {
                "Self" | "self" => same_file(&named),
                "super" => {
                    let parent = parent_module(&me.file);
                    named
                        .into_iter()
                        .filter(|&k| fns[k].file == parent)
                        .collect()
                }
                module if module.starts_with(|ch: char| ch.is_lowercase()) => named
                    .into_iter()
                    .filter(|&k| file_stem(&fns[k].file) == module)
                    .collect(),
                _type => {
                    let local = same_file(&named);
                    if local.is_empty() { named } else { local }
                }
            }
        } else {
            let free: Vec<usize> = named.into_iter().filter(|&k| !fns[k].method).collect();
            let local = same_file(&free);
            if local.is_empty() { free } else { local }
        };
        out.extend(found);
    }
    out
}

fn reachable(fns: &[FnDef], from: impl IntoIterator<Item = usize>) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<usize> = from.into_iter().collect();
    while let Some(k) = stack.pop() {
        if seen.insert(k) {
            stack.extend(callees(fns, k));
        }
    }
    seen
}

/// The methods a trait declares (with or without a default body).
fn trait_methods(file: &str, name: &str) -> BTreeSet<String> {
    let src =
        strip(&std::fs::read_to_string(workspace_root().join("shared/src").join(file)).unwrap());
    let at = src
        .find(&format!("trait {name}"))
        .unwrap_or_else(|| panic!("trait {name} not found in {file}"));
    let open = at + src[at..].find('{').unwrap();
    let body = &src[open..=matching_brace(&src, open).unwrap()];
    regex(r"\bfn\s+([a-z_][A-Za-z0-9_]*)")
        .captures_iter(body)
        .map(|c| c[1].to_owned())
        .collect()
}

/// The variants of `enum Op` in store/ops.rs.
fn op_variants() -> BTreeSet<String> {
    let src =
        strip(&std::fs::read_to_string(workspace_root().join("shared/src/store/ops.rs")).unwrap());
    let at = src.find("enum Op {").expect("enum Op in store/ops.rs");
    let open = at + src[at..].find('{').unwrap();
    let body = &src[open + 1..matching_brace(&src, open).unwrap()];
    // What is left at the enum's own depth: `Name, Name, #[attr] Name`.
    let mut flat = String::new();
    let mut depth = 0;
    for ch in body.chars() {
        match ch {
            '{' | '(' => depth += 1,
            '}' | ')' => depth -= 1,
            c if depth == 0 => flat.push(c),
            _ => {}
        }
    }
    flat.split(',')
        .filter_map(|item| {
            item.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .find(|w| w.starts_with(char::is_uppercase))
                .map(str::to_owned)
        })
        .collect()
}

/// `transact_write_items` -> `TransactWriteItems`.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// The SDK operations (`client.<operation>(`) reachable from `entries` within an adapter.
fn sdk_operations(adapter: &[FnDef], entries: impl IntoIterator<Item = usize>) -> BTreeSet<String> {
    let op_re = regex(r"\bclient\.([a-z_][a-z0-9_]*)\(");
    reachable(adapter, entries)
        .into_iter()
        .flat_map(|k| {
            op_re
                .captures_iter(&adapter[k].body)
                .map(|c| c[1].to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|op| op != "clone")
        .collect()
}

/// What each function's code can call, as IAM actions. A DynamoDB action on an index reads
/// `dynamodb:Query on index/<name>`; on the table, just the action.
fn code_actions() -> BTreeMap<&'static str, BTreeSet<String>> {
    let layer = functions_in(LAYER);
    let dynamo = functions_in(DYNAMO_ADAPTER);
    let ecs = functions_in(ECS_ADAPTER);
    let sns = functions_in(SNS_ADAPTER);
    let store_port = trait_methods("store/mod.rs", "Store");
    let deploy_port = trait_methods("deploy/mod.rs", "Deployer");

    let variants = op_variants();
    let mapped: BTreeSet<String> = TRANSACT_ITEMS
        .iter()
        .map(|(v, _)| (*v).to_owned())
        .collect();
    assert!(
        variants.is_subset(&mapped) && !variants.is_empty(),
        "store::Op has variants {variants:?}; TRANSACT_ITEMS maps only {mapped:?}"
    );

    let port_re = regex(r"\b(store|deployer)(?:\(\))?\.([a-z_][a-z0-9_]*)\(");
    let item_re = regex(r"\bOp::([A-Z][A-Za-z]*)\b");
    let mut out = BTreeMap::new();
    for f in FUNCTIONS {
        let entries: Vec<usize> = f
            .entries
            .iter()
            .map(|(file, name)| {
                layer
                    .iter()
                    .position(|d| d.file == *file && d.name == *name)
                    .unwrap_or_else(|| panic!("{}: entry {file}::{name} not found", f.name))
            })
            .collect();
        let reached = reachable(&layer, entries);
        let mut store_calls = BTreeSet::new();
        let mut deploy_calls = BTreeSet::new();
        let mut items = BTreeSet::new();
        for &k in &reached {
            let body = &layer[k].body;
            for c in port_re.captures_iter(body) {
                match &c[1] {
                    "store" if store_port.contains(&c[2]) => store_calls.insert(c[2].to_owned()),
                    "deployer" if deploy_port.contains(&c[2]) => {
                        deploy_calls.insert(c[2].to_owned())
                    }
                    _ => false,
                };
            }
            items.extend(item_re.captures_iter(body).map(|c| c[1].to_owned()));
        }

        let mut actions = BTreeSet::new();
        for method in &store_calls {
            let impl_fn = dynamo
                .iter()
                .position(|d| d.method && d.name == *method)
                .unwrap_or_else(|| panic!("DynamoStore has no {method}"));
            let on_index = dynamo[impl_fn].body.contains("RUNNING_INDEX");
            for op in sdk_operations(&dynamo, [impl_fn]) {
                match op.as_str() {
                    "transact_write_items" => {
                        for (variant, action) in TRANSACT_ITEMS {
                            if items.contains(*variant) {
                                actions.insert((*action).to_owned());
                            }
                        }
                    }
                    "query" if on_index => {
                        actions.insert(format!(
                            "dynamodb:Query on index/{}",
                            imagehook_core::adapters::RUNNING_INDEX
                        ));
                    }
                    _ => actions.extend(authorized_as("dynamodb", &op)),
                }
            }
        }
        if f.ecs {
            let impls: Vec<usize> = (0..ecs.len())
                .filter(|&k| {
                    ecs[k].file == ECS_ADAPTER[0]
                        && ecs[k].method
                        && deploy_calls.contains(&ecs[k].name)
                })
                .collect();
            for op in sdk_operations(&ecs, impls) {
                actions.extend(authorized_as("ecs", &op));
            }
        }
        if f.notifies {
            for op in sdk_operations(&sns, 0..sns.len()) {
                actions.extend(authorized_as("sns", &op));
            }
        }
        out.insert(f.name, actions);
    }
    out
}

// ------------------------------------------------------------------------------------------
// The template.
// ------------------------------------------------------------------------------------------

fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(t) if t.tag.to_string().trim_start_matches('!') == tag => Some(&t.value),
        _ => None,
    }
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

/// The values a position may hold: both branches of `!If` (either may be deployed), without
/// `!Ref AWS::NoValue`; a list's elements.
fn each(v: &Value) -> Vec<&Value> {
    if let Some(args) = tagged(v, "If") {
        let args = args.as_sequence().expect("!If takes a list");
        return args[1..].iter().flat_map(each).collect();
    }
    if tagged(v, "Ref").and_then(Value::as_str) == Some("AWS::NoValue") {
        return Vec::new();
    }
    match v {
        Value::Sequence(s) => s.iter().flat_map(each).collect(),
        other => vec![other],
    }
}

/// `!GetAtt X.Arn` or `!Ref X` -> `X`.
fn referenced(v: &Value) -> Option<String> {
    tagged(v, "GetAtt")
        .or_else(|| tagged(v, "Ref"))
        .and_then(Value::as_str)
        .map(|s| s.trim_end_matches(".Arn").to_owned())
}

/// Allowed actions of a policy document; DynamoDB ones qualified by the index they are on.
fn allowed(document: &Value, table: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let statements = get(document, "Statement").expect("a policy document has statements");
    for st in each(statements) {
        if get(st, "Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        let actions: Vec<&str> = get(st, "Action")
            .map(each)
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.as_str().expect("actions are strings"))
            .collect();
        let resources = get(st, "Resource").map(each).unwrap_or_default();
        let index_re =
            Regex::new(&format!(r"^\$\{{{table}\.Arn\}}/index/([A-Za-z0-9_.-]+)$")).unwrap();
        for action in actions {
            if !action.starts_with("dynamodb:") {
                out.insert(action.to_owned());
                continue;
            }
            for r in &resources {
                if referenced(r).as_deref() == Some(table) {
                    out.insert(action.to_owned());
                } else if let Some(index) = tagged(r, "Sub")
                    .and_then(Value::as_str)
                    .and_then(|s| index_re.captures(s))
                {
                    out.insert(format!("{action} on index/{}", &index[1]));
                } else {
                    out.insert(format!("{action} on {r:?}"));
                }
            }
        }
    }
    out
}

/// What each function's role grants: its inline policies, the managed policies of the template
/// it lists, and the `AWS::IAM::Policy` resources that name it.
fn granted(template: &str) -> BTreeMap<String, BTreeSet<String>> {
    let doc: Value = serde_norway::from_str(template).expect("template.yaml parses");
    let resources = get(&doc, "Resources")
        .and_then(Value::as_mapping)
        .expect("Resources");
    let of_type = |t: &str| -> Vec<(&str, &Value)> {
        resources
            .iter()
            .filter(|(_, r)| get(r, "Type").and_then(Value::as_str) == Some(t))
            .map(|(k, r)| (k.as_str().unwrap(), r))
            .collect()
    };
    let tables = of_type("AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1, "one table");
    let (table, table_def) = tables[0];
    let indexes: Vec<&str> = get(table_def, "Properties")
        .and_then(|p| get(p, "GlobalSecondaryIndexes"))
        .map(each)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| get(i, "IndexName").and_then(Value::as_str))
        .collect();
    assert!(
        indexes.contains(&imagehook_core::adapters::RUNNING_INDEX),
        "the table's indexes {indexes:?} lack the one the code queries"
    );

    let mut out = BTreeMap::new();
    for (name, function) in of_type("AWS::Serverless::Function") {
        let binary = get(function, "Metadata")
            .and_then(|m| get(m, "BuildProperties"))
            .and_then(|b| get(b, "Binary"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{name}: no BuildProperties.Binary"));
        let role = get(function, "Properties")
            .and_then(|p| get(p, "Role"))
            .and_then(referenced)
            .unwrap_or_else(|| panic!("{name}: Role is not a role of the template"));
        let role_props = resources
            .get(role.as_str())
            .and_then(|r| get(r, "Properties"))
            .unwrap_or_else(|| panic!("{name}: role {role} not found"));
        let mut actions = BTreeSet::new();
        for policy in get(role_props, "Policies").map(each).unwrap_or_default() {
            let document = get(policy, "PolicyDocument")
                .unwrap_or_else(|| panic!("{role}: a policy without PolicyDocument"));
            actions.extend(allowed(document, table));
        }
        for arn in get(role_props, "ManagedPolicyArns")
            .map(each)
            .unwrap_or_default()
        {
            let managed = referenced(arn)
                .unwrap_or_else(|| panic!("{role}: managed policy {arn:?} is not in the template"));
            let document = resources
                .get(managed.as_str())
                .and_then(|r| get(r, "Properties"))
                .and_then(|p| get(p, "PolicyDocument"))
                .unwrap_or_else(|| panic!("{role}: managed policy {managed} not found"));
            actions.extend(allowed(document, table));
        }
        for (_, policy) in of_type("AWS::IAM::Policy") {
            let props = get(policy, "Properties").unwrap();
            let roles: Vec<String> = get(props, "Roles")
                .map(each)
                .unwrap_or_default()
                .into_iter()
                .filter_map(referenced)
                .collect();
            if roles.contains(&role) {
                actions.extend(allowed(get(props, "PolicyDocument").unwrap(), table));
            }
        }
        let short = binary.strip_prefix("imagehook-").unwrap_or(binary);
        out.insert(short.to_owned(), actions);
    }
    out
}

/// Every difference between what the roles grant and what the code calls.
fn mismatches(template: &str, code: &BTreeMap<&'static str, BTreeSet<String>>) -> Vec<String> {
    let roles = granted(template);
    let mut out = Vec::new();
    for name in roles.keys() {
        if !code.contains_key(name.as_str()) {
            out.push(format!(
                "{name}: a function of the template this check does not know"
            ));
        }
    }
    for (name, calls) in code {
        let Some(grants) = roles.get(*name) else {
            out.push(format!("{name}: no such function in template.yaml"));
            continue;
        };
        for missing in calls.difference(grants) {
            out.push(format!(
                "{name}: the code calls {missing}, the role does not grant it"
            ));
        }
        for extra in grants.difference(calls) {
            if !RUNTIME_ONLY.contains(&extra.as_str()) {
                out.push(format!("{name}: the role grants {extra}, no code calls it"));
            }
        }
    }
    out
}

fn template() -> String {
    std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap()
}

#[test]
fn every_role_grants_exactly_what_its_function_calls() {
    let code = code_actions();
    // Not vacuous: the scan finds the calls each function is known to make.
    assert!(code["push"].contains("ecs:UpdateService"), "{code:#?}");
    assert!(code["push"].contains("ecs:ListServices"), "{code:#?}");
    assert!(
        code["delete"].contains("dynamodb:Query on index/running"),
        "{code:#?}"
    );
    assert!(
        !code["delete"].iter().any(|a| a.starts_with("ecs:")),
        "{code:#?}"
    );
    assert_eq!(
        code["images"],
        BTreeSet::from(["dynamodb:Query".to_owned()]),
        "{code:#?}"
    );
    let found = mismatches(&template(), &code);
    assert!(
        found.is_empty(),
        "template.yaml and the code disagree:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_catches_a_missing_and_an_extra_grant() {
    let code = code_actions();
    let original = template();
    // The push role's inline table statement, without DeleteItem (settling held deployments).
    let push_table = "                  - dynamodb:GetItem\n                  - dynamodb:Query\n                  - dynamodb:DeleteItem\n";
    assert!(
        original.contains(push_table),
        "the push role's table statement moved"
    );
    let narrowed = original.replacen(
        push_table,
        "                  - dynamodb:GetItem\n                  - dynamodb:Query\n",
        1,
    );
    let found = mismatches(&narrowed, &code);
    assert_eq!(
        found,
        vec!["push: the code calls dynamodb:DeleteItem, the role does not grant it".to_owned()]
    );

    let read_history = "Action: dynamodb:Query\n                Resource: !GetAtt ImageTable.Arn\n";
    assert!(
        original.contains(read_history),
        "the images role's statement moved"
    );
    let widened = original.replacen(
        read_history,
        "Action: [dynamodb:Query, dynamodb:Scan]\n                Resource: !GetAtt ImageTable.Arn\n",
        1,
    );
    let found = mismatches(&widened, &code);
    assert_eq!(
        found,
        vec!["images: the role grants dynamodb:Scan, no code calls it".to_owned()]
    );
}

#[test]
fn the_source_reader_sees_only_code() {
    let src = r#"
        // store.transact(  in a comment
        fn a(store: &dyn Store) { let s = "store.dump("; let c = '{'; b(store) }
        fn b<'x>(store: &'x dyn Store) { store
            .get(&k) }
        #[cfg(test)]
        mod tests { fn c(store: &dyn Store) { store.dump() } }
    "#;
    let s = strip(src);
    assert!(!s.contains("dump"), "{s}");
    assert!(!s.contains("transact"), "{s}");
    assert!(normalize(&s).contains("store.get("), "{s}");
    assert_eq!(pascal("transact_write_items"), "TransactWriteItems");
    assert_eq!(file_stem("store/mod.rs"), "store");
    assert_eq!(parent_module("pipeline/push.rs"), "pipeline/mod.rs");
}
