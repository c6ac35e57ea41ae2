//! Fault injection on the real SDK clients: an interceptor that, for chosen operations, either
//! keeps the request from being applied (it goes to a closed port, or asks the server for an
//! operation that does not exist and the refusal is replaced by a throttle or server error) or
//! lets it through and replaces the answer (the write happened, the client hears that it
//! failed). The SDK's own retries and error classification run as in
//! production; only the wire is lying.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{Storable, StoreReplace};

/// When the fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The request never reaches the service.
    Before,
    /// The service applies the request; the client hears `answer` instead of its reply.
    After,
}

/// What the client hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Nothing: the connection is refused (only `Phase::Before`).
    Unreachable,
    /// 400 ThrottlingException, which the SDK retries with backoff.
    Throttled,
    /// 500 InternalServerError, which the SDK retries.
    ServerError,
}

impl Answer {
    fn status(self) -> u16 {
        match self {
            Self::Throttled => 400,
            Self::ServerError | Self::Unreachable => 500,
        }
    }

    fn body(self) -> &'static str {
        match self {
            Self::Throttled => {
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#
            }
            Self::ServerError | Self::Unreachable => {
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}"#
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    operation: &'static str,
    phase: Phase,
    answer: Answer,
    /// Matching calls let through before the fault starts.
    skip: u32,
    /// Matching calls faulted (each SDK attempt counts).
    times: u32,
}

/// The faults of one client, shared with the test that arms them.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    rules: Arc<Mutex<Vec<Rule>>>,
    struck: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug, Clone, Copy)]
struct Struck(Answer);

impl Storable for Struck {
    type Storer = StoreReplace<Self>;
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Faults {
    /// Faults the `times` calls of `operation` that follow the first `skip`.
    pub fn arm(
        &self,
        operation: &'static str,
        phase: Phase,
        answer: Answer,
        skip: u32,
        times: u32,
    ) {
        assert!(
            !(phase == Phase::After && answer == Answer::Unreachable),
            "an answer replaced after the call is an answer"
        );
        self.rules.lock().expect("rules").push(Rule {
            operation,
            phase,
            answer,
            skip,
            times,
        });
    }

    pub fn clear(&self) {
        self.rules.lock().expect("rules").clear();
    }

    /// The faulted calls so far, as `Operation:phase`.
    pub fn struck(&self) -> Vec<String> {
        self.struck.lock().expect("struck").clone()
    }

    fn strike(&self, operation: &str) -> Option<Rule> {
        let mut rules = self.rules.lock().expect("rules");
        let rule = rules.iter_mut().find(|r| r.operation == operation)?;
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        if rule.times == 0 {
            return None;
        }
        rule.times -= 1;
        self.struck
            .lock()
            .expect("struck")
            .push(format!("{operation}:{:?}", rule.phase));
        Some(rule.clone())
    }
}

impl Intercept for Faults {
    fn name(&self) -> &'static str {
        "Faults"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = crate::operation_of(context.request().headers().get("x-amz-target"));
        let Some(rule) = self.strike(&operation) else {
            return Ok(());
        };
        match rule.phase {
            Phase::Before if rule.answer == Answer::Unreachable => {
                context
                    .request_mut()
                    .set_uri(format!("http://127.0.0.1:{}/", closed_port()))?;
            }
            // The service is asked for an operation that does not exist, so nothing is applied,
            // and its refusal is replaced by the answer.
            Phase::Before => {
                let target = context
                    .request()
                    .headers()
                    .get("x-amz-target")
                    .and_then(|t| t.split('.').next())
                    .unwrap_or_default()
                    .to_owned();
                context
                    .request_mut()
                    .headers_mut()
                    .insert("x-amz-target", format!("{target}.FaultInjected"));
                cfg.interceptor_state().store_put(Struck(rule.answer));
            }
            Phase::After => {
                cfg.interceptor_state().store_put(Struck(rule.answer));
            }
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Struck(answer)) = cfg.load::<Struck>().copied() {
            cfg.interceptor_state().unset::<Struck>();
            let resp = context.response_mut();
            *resp.status_mut() = answer.status().try_into()?;
            resp.headers_mut()
                .insert("content-type", "application/x-amz-json-1.0");
            *resp.body_mut() = SdkBody::from(answer.body());
        }
        Ok(())
    }
}
