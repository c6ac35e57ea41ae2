//! The floor a Rust Lambda function's cold start cannot go below: exec, the Runtime API's
//! `next`, and a posted answer, with the runtime the functions use (lambda_runtime on a
//! current-thread tokio runtime) and no work in between. scripts/bench times it beside the push
//! function, in the same harness and the same run, so the push function's own start is the
//! difference. It answers every event with an empty API Gateway 200.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

fn main() -> Result<(), Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(lambda_runtime::run(service_fn(
            |_: LambdaEvent<Value>| async { Ok::<_, Error>(json!({"statusCode": 200})) },
        )))
}
