//! The outcomes function's parser: an ECS Deployment State Change from EventBridge.
#![no_main]

use imagehook_core::model::ecs_outcome::EcsOutcome;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Err(e) = EcsOutcome::parse(body) {
        let _ = e.to_string();
    }
});
