//! Least privilege, measured: the AWS operations each function made while the e2e suite ran
//! ([`crate::calls`]) against what its role in `template.yaml` grants. A call the role lacks
//! fails only in AWS, where no other test runs; a grant no test exercises is either more than
//! the function needs or a path the suite does not cover. Both fail the check, by function and
//! action. `iam-check` (src/bin) runs it after the whole suite; `scripts/test` calls it.
//!
//! What is by hand is small and below: the SDK operations IAM authorizes as other actions
//! ([`authorized_as`]), the grants only the Lambda runtime uses ([`RUNTIME_ONLY`]) and the
//! grants moto cannot exercise ([`EXEMPT`], empty today).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_norway::Value;

use crate::calls::{Call, UNATTRIBUTED};

// ------------------------------------------------------------------------------------------
// What is by hand.
// ------------------------------------------------------------------------------------------

/// The IAM actions one recorded call needs. A DynamoDB action on an index reads
/// `dynamodb:Query on index/<name>`: it is authorized on the index's ARN, not the table's.
pub fn authorized_as(call: &Call) -> Vec<String> {
    match (call.service.as_str(), call.operation.as_str()) {
        // TransactWriteItems has no IAM action of its own: DynamoDB authorizes each item as its
        // single-item counterpart ("Using IAM with DynamoDB transactions").
        ("dynamodb", "TransactWriteItems") => call
            .items
            .iter()
            .map(|kind| match kind.as_str() {
                "Put" => "dynamodb:PutItem".to_owned(),
                "Update" => "dynamodb:UpdateItem".to_owned(),
                "Delete" => "dynamodb:DeleteItem".to_owned(),
                "ConditionCheck" => "dynamodb:ConditionCheckItem".to_owned(),
                other => format!("dynamodb:{other}Item"),
            })
            .collect(),
        // A Query or Scan of an index is authorized against the index's ARN.
        ("dynamodb", op @ ("Query" | "Scan")) => match &call.index {
            Some(index) => vec![format!("dynamodb:{op} on index/{index}")],
            None => vec![format!("dynamodb:{op}")],
        },
        // A task definition registered with tags is also authorized as ecs:TagResource (with
        // ecs:CreateAction = RegisterTaskDefinition), and one that names a task or execution
        // role needs iam:PassRole for it.
        ("ecs", "RegisterTaskDefinition") => {
            let mut out = vec!["ecs:RegisterTaskDefinition".to_owned()];
            if call.tags {
                out.push("ecs:TagResource".to_owned());
            }
            if call.roles {
                out.push("iam:PassRole".to_owned());
            }
            out
        }
        // The Service Authorization Reference maps UpdateService to ecs:UpdateService and
        // iam:PassRole (to ecs-tasks.amazonaws.com): moving a service to a revision passes its
        // task and execution roles. The request names only the revision, not its roles, so the
        // check takes the case IAM checks: a revision with roles.
        ("ecs", "UpdateService") => vec!["ecs:UpdateService".to_owned(), "iam:PassRole".to_owned()],
        // UpdateExpressGatewayService is sent with serviceArn and primaryContainer only: it
        // names no role, so it passes none, and falls to the default below.
        // "PublishBatch ... requires the sns:Publish permission" (SNS API reference).
        ("sns", "PublishBatch") => vec!["sns:Publish".to_owned()],
        (service, operation) => vec![format!("{service}:{operation}")],
    }
}

/// Granted without a call in the code: the Lambda service writes each function's log, and
/// sends an asynchronous event that failed every attempt to its on-failure destination, with
/// the function's role.
pub const RUNTIME_ONLY: &[&str] = &[
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "sqs:SendMessage",
];

/// (function, action, why): grants the e2e suite cannot exercise against moto. Every entry is a
/// call no test proves; keep this list empty unless moto truly cannot serve the call.
pub const EXEMPT: &[(&str, &str, &str)] = &[];

// ------------------------------------------------------------------------------------------
// The template.
// ------------------------------------------------------------------------------------------

pub(crate) fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(t) if t.tag.to_string().trim_start_matches('!') == tag => Some(&t.value),
        _ => None,
    }
}

pub(crate) fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

/// The values a position may hold: both branches of `!If` (either may be deployed), without
/// `!Ref AWS::NoValue`; a list's elements.
pub(crate) fn each(v: &Value) -> Vec<&Value> {
    if let Some(args) = tagged(v, "If") {
        return match args.as_sequence() {
            Some(args) => args.iter().skip(1).flat_map(each).collect(),
            None => Vec::new(),
        };
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
fn allowed(document: &Value, table: &str) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    let statements = get(document, "Statement").ok_or("a policy document without Statement")?;
    let index_prefix = format!("${{{table}.Arn}}/index/");
    for st in each(statements) {
        if get(st, "Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        let mut actions = Vec::new();
        for a in get(st, "Action").map(each).unwrap_or_default() {
            actions.push(a.as_str().ok_or("an action that is not a string")?);
        }
        let resources = get(st, "Resource").map(each).unwrap_or_default();
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
                    .and_then(|s| s.strip_prefix(&index_prefix))
                {
                    out.insert(format!("{action} on index/{index}"));
                } else {
                    out.insert(format!("{action} on {r:?}"));
                }
            }
        }
    }
    Ok(out)
}

/// What each function's role grants, by function (`imagehook-<name>` -> `<name>`): its inline
/// policies, the managed policies of the template it lists, and the `AWS::IAM::Policy`
/// resources that name it.
pub fn granted(template: &str) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let doc: Value = serde_norway::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let resources = get(&doc, "Resources")
        .and_then(Value::as_mapping)
        .ok_or("template.yaml has no Resources")?;
    let of_type = |t: &str| -> Vec<(&str, &Value)> {
        resources
            .iter()
            .filter(|(_, r)| get(r, "Type").and_then(Value::as_str) == Some(t))
            .filter_map(|(k, r)| Some((k.as_str()?, r)))
            .collect()
    };
    let tables = of_type("AWS::DynamoDB::Table");
    let [(table, _)] = tables.as_slice() else {
        return Err(format!(
            "expected one DynamoDB table, found {}",
            tables.len()
        ));
    };

    let mut out = BTreeMap::new();
    for (name, function) in of_type("AWS::Serverless::Function") {
        let binary = get(function, "Metadata")
            .and_then(|m| get(m, "BuildProperties"))
            .and_then(|b| get(b, "Binary"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{name}: no Metadata.BuildProperties.Binary"))?;
        let role = get(function, "Properties")
            .and_then(|p| get(p, "Role"))
            .and_then(referenced)
            .ok_or_else(|| format!("{name}: Role is not a role of the template"))?;
        let role_props = resources
            .get(role.as_str())
            .and_then(|r| get(r, "Properties"))
            .ok_or_else(|| format!("{name}: role {role} not found"))?;
        let mut actions = BTreeSet::new();
        for policy in get(role_props, "Policies").map(each).unwrap_or_default() {
            let document = get(policy, "PolicyDocument")
                .ok_or_else(|| format!("{role}: a policy without PolicyDocument"))?;
            actions.extend(allowed(document, table)?);
        }
        for arn in get(role_props, "ManagedPolicyArns")
            .map(each)
            .unwrap_or_default()
        {
            let managed = referenced(arn)
                .ok_or_else(|| format!("{role}: managed policy {arn:?} is not in the template"))?;
            let document = resources
                .get(managed.as_str())
                .and_then(|r| get(r, "Properties"))
                .and_then(|p| get(p, "PolicyDocument"))
                .ok_or_else(|| format!("{role}: managed policy {managed} not found"))?;
            actions.extend(allowed(document, table)?);
        }
        for (policy_name, policy) in of_type("AWS::IAM::Policy") {
            let props =
                get(policy, "Properties").ok_or_else(|| format!("{policy_name}: no Properties"))?;
            let names_role = get(props, "Roles")
                .map(each)
                .unwrap_or_default()
                .into_iter()
                .filter_map(referenced)
                .any(|r| r == role);
            if names_role {
                let document = get(props, "PolicyDocument")
                    .ok_or_else(|| format!("{policy_name}: no PolicyDocument"))?;
                actions.extend(allowed(document, table)?);
            }
        }
        let short = binary.strip_prefix("imagehook-").unwrap_or(binary);
        out.insert(short.to_owned(), actions);
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// The comparison.
// ------------------------------------------------------------------------------------------

/// How one (function, action) pair stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Granted and called; the SDK operations that needed it.
    Exercised(BTreeSet<String>),
    /// Granted for the Lambda runtime, not for the code.
    RuntimeOnly,
    /// Granted, not exercised, and listed in [`EXEMPT`] with this reason.
    Exempt(&'static str),
    /// Called (by these operations) and not granted.
    NotGranted(BTreeSet<String>),
    /// Granted and never called by the suite.
    Unused,
}

#[derive(Debug, Default)]
pub struct Report {
    /// (function, action) -> standing, every pair of the template and the records.
    pub rows: BTreeMap<(String, String), Standing>,
    /// Every failure, one line each, naming the function and the action.
    pub problems: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// One line per function and action: granted, and the operations that exercised it.
    pub fn table(&self) -> String {
        let width = |f: fn(&(String, String)) -> usize| self.rows.keys().map(f).max().unwrap_or(0);
        let (fw, aw) = (
            width(|k| k.0.len()).max("function".len()),
            width(|k| k.1.len()).max("action".len()),
        );
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:fw$}  {:aw$}  {:7}  exercised by",
            "function", "action", "granted"
        );
        for ((function, action), standing) in &self.rows {
            let (granted, by) = match standing {
                Standing::Exercised(ops) => {
                    ("yes", ops.iter().cloned().collect::<Vec<_>>().join(", "))
                }
                Standing::RuntimeOnly => (
                    "yes",
                    "(the Lambda service: logs, failed async events)".to_owned(),
                ),
                Standing::Exempt(why) => ("yes", format!("(exempt: {why})")),
                Standing::NotGranted(ops) => {
                    ("NO", ops.iter().cloned().collect::<Vec<_>>().join(", "))
                }
                Standing::Unused => ("yes", "NOTHING".to_owned()),
            };
            let _ = writeln!(out, "{function:fw$}  {action:aw$}  {granted:7}  {by}");
        }
        out
    }
}

/// Compares the recorded calls with the template's grants.
pub fn compare(template: &str, calls: &[Call]) -> Result<Report, String> {
    let roles = granted(template)?;
    let mut report = Report::default();
    if calls.is_empty() {
        report.problems.push(
            "no AWS calls were recorded: the e2e suite did not run, or it ran without recording"
                .to_owned(),
        );
    }

    // function -> action -> the operations that needed it.
    let mut needed: BTreeMap<&str, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for call in calls {
        if call.function == UNATTRIBUTED {
            report.problems.push(format!(
                "{}:{} was made by a spawned task while {} ran on one thread: it cannot be \
                 attributed to one function",
                call.service,
                call.operation,
                call.candidates.join(", ")
            ));
            continue;
        }
        let actions = needed.entry(call.function.as_str()).or_default();
        for action in authorized_as(call) {
            actions
                .entry(action)
                .or_default()
                .insert(call.operation.clone());
        }
    }

    for function in needed.keys() {
        if !roles.contains_key(*function) {
            report.problems.push(format!(
                "{function}: calls were recorded for a function template.yaml does not have"
            ));
        }
    }
    let none = BTreeMap::new();
    for (function, grants) in &roles {
        let calls = needed.get(function.as_str()).unwrap_or(&none);
        for (action, operations) in calls {
            let standing = if grants.contains(action) {
                Standing::Exercised(operations.clone())
            } else {
                report.problems.push(format!(
                    "{function}: {action} not granted (the e2e suite called {})",
                    operations.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
                Standing::NotGranted(operations.clone())
            };
            report
                .rows
                .insert((function.clone(), action.clone()), standing);
        }
        for action in grants.iter().filter(|a| !calls.contains_key(*a)) {
            let exempt = EXEMPT
                .iter()
                .find(|(f, a, _)| f == function && a == action)
                .map(|(_, _, why)| *why);
            let standing = if RUNTIME_ONLY.contains(&action.as_str()) {
                Standing::RuntimeOnly
            } else if let Some(why) = exempt {
                Standing::Exempt(why)
            } else {
                report.problems.push(format!(
                    "{function}: {action} granted but never exercised by the e2e suite"
                ));
                Standing::Unused
            };
            report
                .rows
                .insert((function.clone(), action.clone()), standing);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two functions: `writer` (inline table policy, a managed policy with an index statement,
    /// an optional `!If` policy and a shared `AWS::IAM::Policy`) and `reader`.
    const TEMPLATE: &str = r#"
Conditions:
  HasTopic: !Equals [a, a]
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  WriterFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: imagehook-writer
    Properties:
      Role: !GetAtt WriterRole.Arn
  WriterRole:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: logs
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [logs:CreateLogStream, logs:PutLogEvents]
                Resource: "*"
        - PolicyName: table
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action:
                  - dynamodb:PutItem
                  - dynamodb:UpdateItem
                Resource: !GetAtt Table.Arn
        - !If
          - HasTopic
          - !Ref AWS::NoValue
          - PolicyName: deploy
            PolicyDocument:
              Statement:
                - Effect: Allow
                  Action: [ecs:RegisterTaskDefinition, ecs:TagResource, iam:PassRole]
                  Resource: "*"
                - Effect: Deny
                  Action: ecs:DeleteService
                  Resource: "*"
      ManagedPolicyArns:
        - !Ref Index
  Index:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: dynamodb:Query
            Resource: !Sub ${Table.Arn}/index/running
  Notify:
    Type: AWS::IAM::Policy
    Properties:
      Roles: [!Ref WriterRole, !Ref ReaderRole]
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: sns:Publish
            Resource: !Ref Topic
  ReaderFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: imagehook-reader
    Properties:
      Role: !GetAtt ReaderRole.Arn
  ReaderRole:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: read
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: dynamodb:Query
                Resource: !GetAtt Table.Arn
"#;

    fn transact(function: &str, items: &[&str]) -> Call {
        let mut c = Call::new(function, "dynamodb", "TransactWriteItems");
        c.items = items.iter().map(|s| (*s).to_owned()).collect();
        c
    }

    fn query(function: &str, index: Option<&str>) -> Call {
        let mut c = Call::new(function, "dynamodb", "Query");
        c.index = index.map(str::to_owned);
        c
    }

    fn register(tags: bool, roles: bool) -> Call {
        let mut c = Call::new("writer", "ecs", "RegisterTaskDefinition");
        c.tags = tags;
        c.roles = roles;
        c
    }

    /// Everything the synthetic template grants, each exercised once.
    fn clean() -> Vec<Call> {
        vec![
            transact("writer", &["Put", "Update"]),
            query("writer", Some("running")),
            register(true, true),
            Call::new("writer", "sns", "PublishBatch"),
            query("reader", None),
            Call::new("reader", "sns", "PublishBatch"),
        ]
    }

    #[test]
    fn grants_are_read_per_function_from_every_kind_of_policy() {
        let roles = granted(TEMPLATE).unwrap();
        let set = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        assert_eq!(
            roles["writer"],
            set(&[
                "dynamodb:PutItem",
                "dynamodb:Query on index/running",
                "dynamodb:UpdateItem",
                "ecs:RegisterTaskDefinition",
                "ecs:TagResource",
                "iam:PassRole",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "sns:Publish",
            ])
        );
        assert_eq!(roles["reader"], set(&["dynamodb:Query", "sns:Publish"]));
    }

    #[test]
    fn a_clean_run_passes() {
        let report = compare(TEMPLATE, &clean()).unwrap();
        assert!(report.passed(), "{:?}", report.problems);
        assert_eq!(
            report.rows[&("writer".to_owned(), "logs:PutLogEvents".to_owned())],
            Standing::RuntimeOnly
        );
        assert_eq!(
            report.rows[&("writer".to_owned(), "sns:Publish".to_owned())],
            Standing::Exercised(BTreeSet::from(["PublishBatch".to_owned()]))
        );
        let table = report.table();
        assert!(table.contains("reader"), "{table}");
        assert!(table.contains("dynamodb:Query on index/running"), "{table}");
    }

    #[test]
    fn a_missing_grant_and_an_unused_grant_are_named() {
        let mut calls = clean();
        // A Delete item in a transaction needs DeleteItem, which the writer lacks.
        calls[0] = transact("writer", &["Delete", "Put", "Update"]);
        // The reader never publishes.
        calls.retain(|c| !(c.function == "reader" && c.service == "sns"));
        let report = compare(TEMPLATE, &calls).unwrap();
        assert_eq!(
            report.problems,
            vec![
                "reader: sns:Publish granted but never exercised by the e2e suite".to_owned(),
                "writer: dynamodb:DeleteItem not granted (the e2e suite called TransactWriteItems)"
                    .to_owned(),
            ]
        );
        assert!(!report.passed());
        assert!(report.table().contains("NOTHING"));
    }

    #[test]
    fn index_queries_tags_and_roles_are_their_own_actions() {
        // A table query where only the index is granted, and a registration without tags or
        // roles, which then leaves TagResource and PassRole unused.
        let mut calls = clean();
        calls[1] = query("writer", None);
        calls[2] = register(false, false);
        let report = compare(TEMPLATE, &calls).unwrap();
        assert_eq!(
            report.problems,
            vec![
                "writer: dynamodb:Query not granted (the e2e suite called Query)".to_owned(),
                "writer: dynamodb:Query on index/running granted but never exercised by the e2e suite"
                    .to_owned(),
                "writer: ecs:TagResource granted but never exercised by the e2e suite".to_owned(),
                "writer: iam:PassRole granted but never exercised by the e2e suite".to_owned(),
            ]
        );
    }

    #[test]
    fn moving_a_service_to_a_revision_passes_its_roles() {
        let update = Call::new("writer", "ecs", "UpdateService");
        assert_eq!(
            authorized_as(&update),
            vec!["ecs:UpdateService".to_owned(), "iam:PassRole".to_owned()]
        );
        // Describing, even with include=TAGS, needs nothing else.
        let describe = Call::new("writer", "ecs", "DescribeTaskDefinition");
        assert_eq!(
            authorized_as(&describe),
            vec!["ecs:DescribeTaskDefinition".to_owned()]
        );
    }

    #[test]
    fn an_express_update_naming_no_role_needs_only_its_own_action() {
        for op in [
            "DescribeExpressGatewayService",
            "UpdateExpressGatewayService",
        ] {
            assert_eq!(
                authorized_as(&Call::new("writer", "ecs", op)),
                vec![format!("ecs:{op}")]
            );
        }
    }

    #[test]
    fn no_records_unknown_functions_and_unattributed_calls_fail() {
        let report = compare(TEMPLATE, &[]).unwrap();
        assert!(report.problems[0].starts_with("no AWS calls were recorded"));
        // And every grant is unused.
        assert!(report.problems.contains(
            &"reader: dynamodb:Query granted but never exercised by the e2e suite".to_owned()
        ));

        let mut calls = clean();
        calls.push(Call::new("stranger", "dynamodb", "GetItem"));
        let mut spawned = Call::new(UNATTRIBUTED, "sns", "PublishBatch");
        spawned.candidates = vec!["reader".into(), "writer".into()];
        calls.push(spawned);
        let report = compare(TEMPLATE, &calls).unwrap();
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(report.problems[0].contains("reader, writer ran on one thread"));
        assert!(report.problems[1].starts_with("stranger: "));
    }
}
