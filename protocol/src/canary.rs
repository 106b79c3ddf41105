//! The canary policy a stage has until it sets one: the platform judges by it, and clients
//! show it as the policy in force.

use crate::pb;

/// 10 % then 50 %, a minute each, at most one point more errors and half again the p95,
/// judged on at least 20 requests.
pub fn default_policy() -> pb::CanaryPolicy {
    pb::CanaryPolicy {
        steps: vec![10, 50],
        step_seconds: 60,
        max_error_rate_increase: 1.0,
        max_p95_ratio: 1.5,
        min_requests: 20,
        sticky: false,
    }
}
