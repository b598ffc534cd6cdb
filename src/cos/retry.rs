//! The one place that decides whether a failed request is tried again, and when
//! (cos-protocol.md §5.3).
//!
//! Retried: 5xx (500, 502, 503 ServiceUnavailable/SlowDown, 504, COS's 520), 429, 408,
//! `400 RequestTimeout`, `409 PathConflict`/`UploadConflict`, a 200 whose body is an `<Error>`
//! (Copy, Complete) with a transient inner code, connection failures, and timeouts or broken
//! bodies of idempotent requests. Never other 4xx. Backoff is exponential with jitter, harder
//! after SlowDown; every attempt is signed afresh by the caller.

use std::time::Duration;

use rand::RngExt;

use super::error::{CosError, TransportKind};

/// Retry budget and backoff shape.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. 10 keeps a 20 % fault rate from ever surfacing
    /// (0.2^10 ≈ 1e-7 per request) while bounding a dead service to well under a minute.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles each time.
    pub base_delay: Duration,
    /// Ceiling of a single delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(3),
        }
    }
}

/// Whether the outcome of one attempt deserves another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retryable {
    No,
    Yes,
    /// Yes, and the server asked us to slow down.
    SlowDown,
}

/// Classifies an error. `idempotent` says whether repeating a request that may have reached
/// the server is harmless (everything but Initiate Multipart Upload).
pub fn classify(err: &CosError, idempotent: bool) -> Retryable {
    match err {
        CosError::Service(s) => {
            if s.in_ok_response {
                return match s.code.as_str() {
                    "SlowDown" => Retryable::SlowDown,
                    "InternalError" | "ServiceUnavailable" | "RequestTimeout" => Retryable::Yes,
                    _ => Retryable::No,
                };
            }
            match (s.status, s.code.as_str()) {
                (_, "SlowDown") | (429, _) | (503, _) => Retryable::SlowDown,
                (500..=599, _) => Retryable::Yes,
                (408, _) | (400, "RequestTimeout") => Retryable::Yes,
                (409, "PathConflict") | (409, "UploadConflict") => Retryable::Yes,
                _ => Retryable::No,
            }
        }
        CosError::Transport { kind, .. } => match kind {
            TransportKind::Connect => Retryable::Yes,
            TransportKind::LocalBody => Retryable::No,
            _ if idempotent => Retryable::Yes,
            _ => Retryable::No,
        },
        CosError::Protocol(_) if idempotent => Retryable::Yes,
        _ => Retryable::No,
    }
}

impl RetryPolicy {
    /// A policy that never retries (for tests of the failure path).
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        }
    }

    /// The delay before attempt `attempt + 1` (`attempt` counts from 1): full exponential value
    /// times a random factor in [0.5, 1), four times longer after SlowDown.
    pub fn delay(&self, attempt: u32, kind: Retryable) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        let mut d = self.base_delay.saturating_mul(factor);
        if kind == Retryable::SlowDown {
            d = d.saturating_mul(4);
        }
        let d = d.min(self.max_delay);
        let jitter: f64 = rand::rng().random_range(0.5..1.0);
        d.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cos::error::ServiceError;

    fn svc(status: u16, code: &str, in_ok: bool) -> CosError {
        CosError::Service(ServiceError {
            status,
            code: code.into(),
            message: String::new(),
            request_id: String::new(),
            in_ok_response: in_ok,
        })
    }

    #[test]
    fn classification() {
        assert_eq!(
            classify(&svc(503, "SlowDown", false), true),
            Retryable::SlowDown
        );
        assert_eq!(
            classify(&svc(500, "InternalError", false), false),
            Retryable::Yes
        );
        assert_eq!(classify(&svc(520, "", false), true), Retryable::Yes);
        assert_eq!(classify(&svc(429, "", false), true), Retryable::SlowDown);
        assert_eq!(classify(&svc(408, "", false), true), Retryable::Yes);
        assert_eq!(classify(&svc(404, "NoSuchKey", false), true), Retryable::No);
        assert_eq!(
            classify(&svc(403, "SignatureDoesNotMatch", false), true),
            Retryable::No
        );
        assert_eq!(
            classify(&svc(200, "InternalError", true), true),
            Retryable::Yes
        );
        assert_eq!(classify(&svc(200, "NoSuchKey", true), true), Retryable::No);
        let timeout = CosError::Transport {
            kind: TransportKind::Timeout,
            message: String::new(),
        };
        assert_eq!(classify(&timeout, true), Retryable::Yes);
        assert_eq!(classify(&timeout, false), Retryable::No);
        let connect = CosError::Transport {
            kind: TransportKind::Connect,
            message: String::new(),
        };
        assert_eq!(classify(&connect, false), Retryable::Yes);
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy::default();
        let d1 = p.delay(1, Retryable::Yes);
        assert!(d1 >= Duration::from_millis(25) && d1 < Duration::from_millis(50));
        let d20 = p.delay(20, Retryable::Yes);
        assert!(d20 < p.max_delay);
        assert!(p.delay(3, Retryable::SlowDown) >= Duration::from_millis(400));
    }
}
