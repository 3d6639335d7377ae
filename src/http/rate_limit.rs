//! Webhook rate limits per agent and per tenant: token buckets (the `governor`
//! crate, GCRA), checked right after the agent lookup and before the body is read or
//! anything is stored, answering `429 rate_limited` with `Retry-After`.
//!
//! In memory, per process: with several nodes behind a load balancer each node
//! applies the limit on its own (so the cluster-wide rate is up to nodes × limit).
//! Buckets are keyed by existing agents and tenants only (the lookup comes first),
//! so the key space cannot be grown by an attacker.

use std::num::NonZeroU32;
use std::time::Duration;

use actix_web::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::error::ApiError;
use crate::config::RateLimit;
use crate::domain::{AgentId, TenantId};

pub struct RateLimits {
    agent: Option<DefaultKeyedRateLimiter<AgentId>>,
    tenant: Option<DefaultKeyedRateLimiter<TenantId>>,
    clock: DefaultClock,
}

fn quota(limit: RateLimit) -> Option<Quota> {
    let burst = NonZeroU32::new(limit.burst.max(1))?;
    // The period of one token; governor needs a non-zero one.
    let period = Duration::from_secs_f64(1.0 / limit.per_second).max(Duration::from_nanos(1));
    Some(Quota::with_period(period)?.allow_burst(burst))
}

impl RateLimits {
    pub fn new(agent: Option<RateLimit>, tenant: Option<RateLimit>) -> Self {
        RateLimits {
            agent: agent.and_then(quota).map(DefaultKeyedRateLimiter::keyed),
            tenant: tenant.and_then(quota).map(DefaultKeyedRateLimiter::keyed),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one token from the agent's bucket, then one from its tenant's. (A request
    /// refused by the tenant limit has still used its agent token: the agent limit is
    /// the finer one, and being conservative there costs nothing.)
    pub fn check(&self, agent: &AgentId, tenant: &TenantId) -> Result<(), ApiError> {
        if let Some(limiter) = &self.agent
            && let Err(not_until) = limiter.check_key(agent)
        {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(refused(format!("agent {agent}"), wait));
        }
        if let Some(limiter) = &self.tenant
            && let Err(not_until) = limiter.check_key(tenant)
        {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(refused(format!("tenant {tenant}"), wait));
        }
        Ok(())
    }
}

fn refused(whose: String, wait: Duration) -> ApiError {
    // Retry-After is in whole seconds: round up, so a sender that waits that long finds
    // a token.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("rate limit of {whose} exceeded; retry after {seconds} s"),
    )
    .retry_after(seconds.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: f64, burst: u32) -> Option<RateLimit> {
        Some(RateLimit { per_second, burst })
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_retry_after() {
        let limits = RateLimits::new(limit(0.5, 2), None);
        let (a, t) = (AgentId::generate(), TenantId::parse("acme").unwrap());
        assert!(limits.check(&a, &t).is_ok());
        assert!(limits.check(&a, &t).is_ok());
        let refused = limits.check(&a, &t).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.code, "rate_limited");
        // One token every 2 s: the wait is at most 2 s, rounded up.
        assert!(matches!(refused.retry_after, Some(1 | 2)), "{refused:?}");
        // Another agent has its own bucket.
        assert!(limits.check(&AgentId::generate(), &t).is_ok());
    }

    #[test]
    fn the_tenant_bucket_is_shared_by_its_agents() {
        let limits = RateLimits::new(None, limit(0.1, 1));
        let t = TenantId::parse("acme").unwrap();
        assert!(limits.check(&AgentId::generate(), &t).is_ok());
        let refused = limits.check(&AgentId::generate(), &t).unwrap_err();
        assert!(refused.message.contains("tenant acme"), "{refused:?}");
        assert!(
            limits
                .check(&AgentId::generate(), &TenantId::parse("other").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn no_limits_configured_means_no_limit() {
        let limits = RateLimits::new(None, None);
        let (a, t) = (AgentId::generate(), TenantId::parse("acme").unwrap());
        for _ in 0..10_000 {
            assert!(limits.check(&a, &t).is_ok());
        }
    }
}
