//! The Lambda and HTTP glue: requests in, responses and metrics out, and the one map from
//! errors to HTTP statuses.

pub mod control;
pub mod error;
pub mod guard;
pub mod http;
pub mod images;
pub mod lambda;
pub mod logging;
pub mod metrics;
pub mod response;
