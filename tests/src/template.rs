//! Where template.yaml puts the webhook secret: only in the functions that check senders, and in
//! the EventBridge connection as one resolved value.
//!
//! The connection once took `!Select [0, !Split [",", WebhookSecrets]]`: with a dynamic
//! reference the split ran on the unresolved `{{resolve:...}}` text, so after a rotation
//! (`<new>,<old>`) the connection sent both, was refused with 401 and deauthorized. And every
//! function had the secrets in its environment, the IAM-authenticated images function included.

use serde_norway::Value;

use crate::iam::{each, get, tagged};

/// Names of the template's parameters that hold or locate the webhook secret.
const SECRET_PARAMETERS: &[&str] = &["WebhookSecrets", "WebhookSecretArn", "WebhookSecretVersion"];

/// Whether a function answers webhooks whose senders it authenticates itself: an HTTP API event
/// without an IAM authorizer. EventBridge events and IAM-authorized routes are authenticated by
/// AWS.
fn checks_senders(function: &Value) -> bool {
    let events = get(function, "Properties")
        .and_then(|p| get(p, "Events"))
        .and_then(Value::as_mapping);
    events.into_iter().flatten().any(|(_, event)| {
        let props = get(event, "Properties");
        get(event, "Type").and_then(Value::as_str) == Some("HttpApi")
            && props
                .and_then(|p| get(p, "Auth"))
                .and_then(|a| get(a, "Authorizer"))
                .and_then(Value::as_str)
                != Some("AWS_IAM")
    })
}

/// Every parameter a value refers to: `!Ref X`, and `${X}` in a `!Sub` string.
fn refers_to(v: &Value, out: &mut Vec<String>) {
    if let Some(name) = tagged(v, "Ref").and_then(Value::as_str) {
        out.push(name.to_owned());
    }
    if let Some(sub) = tagged(v, "Sub") {
        let text = match sub {
            Value::Sequence(s) => s.first().and_then(Value::as_str),
            other => other.as_str(),
        };
        for part in text.unwrap_or_default().split("${").skip(1) {
            out.push(part.split('}').next().unwrap_or_default().to_owned());
        }
    }
    match v {
        Value::Tagged(t) => refers_to(&t.value, out),
        Value::Sequence(s) => s.iter().for_each(|x| refers_to(x, out)),
        Value::Mapping(m) => m.values().for_each(|x| refers_to(x, out)),
        _ => {}
    }
}

fn mentions_secret(v: &Value) -> bool {
    let mut names = Vec::new();
    refers_to(v, &mut names);
    names
        .iter()
        .any(|n| SECRET_PARAMETERS.contains(&n.as_str()))
}

/// Whether any intrinsic function named `tag` appears in `v`.
fn uses(v: &Value, tag: &str) -> bool {
    tagged(v, tag).is_some()
        || match v {
            Value::Tagged(t) => uses(&t.value, tag),
            Value::Sequence(s) => s.iter().any(|x| uses(x, tag)),
            Value::Mapping(m) => m.values().any(|x| uses(x, tag)),
            _ => false,
        }
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Tagged(t) => strings(&t.value, out),
        Value::Sequence(s) => s.iter().for_each(|x| strings(x, out)),
        Value::Mapping(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Problems with where `template` puts the webhook secret, one line each.
pub fn secret_placement(template: &str) -> Result<Vec<String>, String> {
    let doc: Value = serde_norway::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let resources = get(&doc, "Resources")
        .and_then(Value::as_mapping)
        .ok_or("template.yaml has no Resources")?;
    let mut problems = Vec::new();

    // Globals reach every function, those that check no sender too.
    if let Some(env) = get(&doc, "Globals")
        .and_then(|g| get(g, "Function"))
        .and_then(|f| get(f, "Environment"))
        && mentions_secret(env)
    {
        problems.push("Globals: the webhook secret is in every function's environment".to_owned());
    }

    let grants = crate::iam::granted(template)?;
    for (name, function) in resources {
        if get(function, "Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap_or_default();
        let binary = get(function, "Metadata")
            .and_then(|m| get(m, "BuildProperties"))
            .and_then(|b| get(b, "Binary"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let short = binary.strip_prefix("imagehook-").unwrap_or(binary);
        let reads_secret = grants
            .get(short)
            .is_some_and(|g| g.iter().any(|a| a.starts_with("secretsmanager:")));
        let env = get(function, "Properties").and_then(|p| get(p, "Environment"));
        let has_secret = env.is_some_and(mentions_secret);
        if checks_senders(function) {
            let names_arn = env
                .and_then(|e| get(e, "Variables"))
                .and_then(|v| get(v, "WEBHOOK_SECRETS_ARN"))
                .is_some();
            if !names_arn || !reads_secret {
                problems.push(format!(
                    "{name}: checks senders but is not given WEBHOOK_SECRETS_ARN and \
                     secretsmanager:GetSecretValue"
                ));
            }
        } else {
            if has_secret {
                problems.push(format!(
                    "{name}: checks no sender but has the webhook secret in its environment"
                ));
            }
            if reads_secret {
                problems.push(format!(
                    "{name}: checks no sender but its role may read the webhook secret"
                ));
            }
        }
    }

    // Each grant names one secret, never a wildcard: the webhook secret, or the registry
    // logins, which only the push function may read.
    for (name, resource) in resources {
        let statements = get(resource, "Properties")
            .and_then(|p| get(p, "PolicyDocument"))
            .and_then(|d| get(d, "Statement"));
        for st in statements.map(each).unwrap_or_default() {
            let actions = get(st, "Action").map(each).unwrap_or_default();
            if actions
                .iter()
                .filter_map(|a| a.as_str())
                .any(|a| a.starts_with("secretsmanager:"))
            {
                let resource = get(st, "Resource");
                let secret =
                    tagged(resource.unwrap_or(&Value::Null), "Ref").and_then(Value::as_str);
                if !matches!(secret, Some("WebhookSecretArn" | "RegistryCredentialsArn")) {
                    problems.push(format!(
                        "{}: a Secrets Manager grant on {resource:?}, not on WebhookSecretArn \
                         or RegistryCredentialsArn",
                        name.as_str().unwrap_or_default()
                    ));
                }
            }
        }
    }

    for (name, resource) in resources {
        let managed = get(resource, "Properties").and_then(|p| get(p, "ManagedPolicyArns"));
        if get(resource, "Type").and_then(Value::as_str) == Some("AWS::IAM::Role")
            && name.as_str() != Some("PushFunctionRole")
            && managed.is_some_and(|m| format!("{m:?}").contains("RegistryCredentialsPolicy"))
        {
            problems.push(format!(
                "{}: may read the registry logins, which only the push function resolves with",
                name.as_str().unwrap_or_default()
            ));
        }
    }

    match resources.get("EcrConnection") {
        None => problems.push("EcrConnection: not in the template".to_owned()),
        Some(connection) => {
            let key = get(connection, "Properties")
                .and_then(|p| get(p, "AuthParameters"))
                .and_then(|a| get(a, "ApiKeyAuthParameters"))
                .and_then(|a| get(a, "ApiKeyValue"))
                .ok_or("EcrConnection: no ApiKeyAuthParameters.ApiKeyValue")?;
            for f in ["Split", "Select"] {
                if uses(key, f) {
                    problems.push(format!(
                        "EcrConnection: the token goes through Fn::{f}, which would see an \
                         unresolved dynamic reference, not the secret"
                    ));
                }
            }
            let mut names = Vec::new();
            refers_to(key, &mut names);
            if names.iter().any(|n| n == "WebhookSecrets") {
                problems.push(
                    "EcrConnection: the token is taken from WebhookSecrets, a list of secrets"
                        .to_owned(),
                );
            }
            let mut texts = Vec::new();
            strings(key, &mut texts);
            let references: Vec<&String> =
                texts.iter().filter(|t| t.contains("{{resolve:")).collect();
            if references.is_empty()
                || references.iter().any(|t| {
                    !t.contains("{{resolve:secretsmanager:${WebhookSecretArn}:SecretString:current")
                })
            {
                problems.push(
                    "EcrConnection: the token must resolve the current key of WebhookSecretArn"
                        .to_owned(),
                );
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> String {
        std::fs::read_to_string(crate::workspace_root().join("template.yaml"))
            .expect("template.yaml")
    }

    #[test]
    fn the_secret_is_only_where_senders_are_checked() {
        let problems = secret_placement(&template()).unwrap();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn the_old_placement_is_refused() {
        let t = template();
        let old_globals = t.replacen(
            "        AUTH_MODE: !Ref AuthMode\n",
            "        AUTH_MODE: !Ref AuthMode\n        WEBHOOK_SECRETS: !Ref WebhookSecrets\n",
            1,
        );
        let p = secret_placement(&old_globals).unwrap();
        assert!(p.iter().any(|l| l.starts_with("Globals:")), "{p:?}");

        let start = t
            .find("          ApiKeyValue: !If")
            .expect("the connection's token");
        let end = start + t[start..].find("\n\n").expect("end of the connection");
        let old_connection = format!(
            "{}          ApiKeyValue: !Sub\n            - Bearer ${{Token}}\n            - Token: !Select [0, !Split [\",\", !Ref WebhookSecrets]]{}",
            &t[..start],
            &t[end..]
        );
        let p = secret_placement(&old_connection).unwrap();
        for f in [
            "Fn::Split",
            "Fn::Select",
            "WebhookSecrets, a list",
            "current key",
        ] {
            assert!(p.iter().any(|l| l.contains(f)), "{f}: {p:?}");
        }

        let images_reads = t.replacen(
            "      Description: imagehook images function (read-only)\n",
            "      Description: imagehook images function (read-only)\n      ManagedPolicyArns:\n        - !Ref WebhookSecretPolicy\n",
            1,
        );
        let p = secret_placement(&images_reads).unwrap();
        assert!(
            p.iter()
                .any(|l| l.starts_with("ImagesFunction: checks no sender but its role")),
            "{p:?}"
        );

        let role = t.find("  DeleteFunctionRole:").expect("the delete role");
        let delete_reads_logins = format!(
            "{}{}",
            &t[..role],
            t[role..].replacen(
                "      ManagedPolicyArns:\n",
                "      ManagedPolicyArns:\n        - !Ref RegistryCredentialsPolicy\n",
                1,
            )
        );
        assert_ne!(delete_reads_logins, t);
        let p = secret_placement(&delete_reads_logins).unwrap();
        assert!(
            p.iter().any(|l| l.contains("may read the registry logins")),
            "{p:?}"
        );
    }
}
