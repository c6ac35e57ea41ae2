//! The outcomes function's parser: an ECS Deployment State Change from EventBridge.
#![no_main]

use imagehook_core::rollout::RolloutChange;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Err(e) = RolloutChange::parse(body) {
        let _ = e.to_string();
    }
});
