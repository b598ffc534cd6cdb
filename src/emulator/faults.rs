//! Fault injection for the emulator: rules that make chosen operations fail, slow down, hang
//! or lose their connection, set from `--faults SPEC` or programmatically by tests.
//!
//! Syntax: comma-separated rules `OP:ACTION:WHEN`.
//! - `OP`: `any`, `get`, `head`, `put`, `put_part`, `part_copy`, `copy`, `list`, `delete`,
//!   `delete_multi`, `initiate`, `complete`, `abort`, `list_parts`, `list_uploads`,
//!   `head_bucket`, `put_bucket`, `delete_bucket`, `service`; `write` matches put, put_part, part_copy, copy, initiate and
//!   complete.
//! - `ACTION`: `503` (SlowDown), `500` (InternalError), `520`, `reset` (cut the connection
//!   mid-body), `stall` (never answer), `error200` (a 200 whose body is an `<Error>`; only
//!   Copy, Upload Part - Copy and Complete, others get a 500), `delay=200ms` (or `2s`).
//! - `WHEN`: a probability (`0.1`), `always`, or `xN` for the next N matching requests.
//!
//! Example: `put_part:503:0.2,get:reset:0.1,any:delay=200ms:0.05`.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rand::RngExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    Status(u16),
    Reset,
    Stall,
    Error200,
    Delay(Duration),
}

#[derive(Debug, Clone, PartialEq)]
enum Trigger {
    Probability(f64),
    Count(u64),
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    op: String,
    action: FaultAction,
    trigger: Trigger,
}

const OPS: &[&str] = &[
    "any",
    "write",
    "get",
    "head",
    "put",
    "put_part",
    "part_copy",
    "copy",
    "list",
    "delete",
    "delete_multi",
    "initiate",
    "complete",
    "abort",
    "list_parts",
    "list_uploads",
    "head_bucket",
    "put_bucket",
    "delete_bucket",
    "service",
];

fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(secs) = s.strip_suffix('s') {
        return secs.parse::<f64>().ok().map(Duration::from_secs_f64);
    }
    None
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let [op, action, when] = parts[..] else {
            return Err(format!("fault rule {s:?} is not OP:ACTION:WHEN"));
        };
        if !OPS.contains(&op) {
            return Err(format!("unknown operation {op:?} in fault rule {s:?}"));
        }
        let action = match action {
            "reset" => FaultAction::Reset,
            "stall" => FaultAction::Stall,
            "error200" => FaultAction::Error200,
            a if a.starts_with("delay=") => FaultAction::Delay(
                parse_duration(&a[6..]).ok_or_else(|| format!("bad delay in {s:?}"))?,
            ),
            a => match a.parse::<u16>() {
                Ok(code @ 400..=599) => FaultAction::Status(code),
                _ => return Err(format!("unknown action {a:?} in fault rule {s:?}")),
            },
        };
        let trigger = if when == "always" {
            Trigger::Probability(1.0)
        } else if let Some(n) = when.strip_prefix('x') {
            Trigger::Count(n.parse().map_err(|_| format!("bad count in {s:?}"))?)
        } else {
            match when.parse::<f64>() {
                Ok(p) if (0.0..=1.0).contains(&p) => Trigger::Probability(p),
                _ => return Err(format!("bad probability {when:?} in fault rule {s:?}")),
            }
        };
        Ok(Rule {
            op: op.to_string(),
            action,
            trigger,
        })
    }
}

/// The active rule set and how many faults it has injected.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    injected: AtomicU64,
    failures: AtomicU64,
}

impl Faults {
    /// Checks a spec without installing it.
    pub fn validate(spec: &str) -> Result<(), String> {
        Self::parse(spec).map(|_| ())
    }

    fn parse(spec: &str) -> Result<Vec<Rule>, String> {
        spec.split(',')
            .filter(|r| !r.trim().is_empty())
            .map(str::parse)
            .collect()
    }

    /// Replaces the rule set; an empty spec removes every rule.
    pub fn set(&self, spec: &str) -> Result<(), String> {
        *self.rules.lock() = Self::parse(spec)?;
        Ok(())
    }

    pub fn clear(&self) {
        self.rules.lock().clear();
    }

    /// Faults injected so far (delays included).
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Failures injected so far (errors, cuts, stalls; not delays).
    pub fn injected_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The faults to apply to one request of operation `op`: at most one delay and at most one
    /// failure, each from the first matching rule that fires.
    pub fn pick(&self, op: &str) -> (Option<Duration>, Option<FaultAction>) {
        let mut rules = self.rules.lock();
        let (mut delay, mut failure) = (None, None);
        let mut rng = rand::rng();
        for rule in rules.iter_mut() {
            let matches = rule.op == "any"
                || rule.op == op
                || (rule.op == "write"
                    && matches!(
                        op,
                        "put" | "put_part" | "part_copy" | "copy" | "initiate" | "complete"
                    ));
            if !matches {
                continue;
            }
            let slot_taken = match rule.action {
                FaultAction::Delay(_) => delay.is_some(),
                _ => failure.is_some(),
            };
            if slot_taken {
                continue;
            }
            let fire = match &mut rule.trigger {
                Trigger::Probability(p) => *p >= 1.0 || rng.random_bool(*p),
                Trigger::Count(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                Trigger::Count(_) => false,
            };
            if !fire {
                continue;
            }
            self.injected.fetch_add(1, Ordering::Relaxed);
            match rule.action {
                FaultAction::Delay(d) => delay = Some(d),
                other => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    failure = Some(other);
                }
            }
        }
        (delay, failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let f = Faults::default();
        f.set("put_part:503:0.2,get:reset:0.1,any:delay=200ms:0.05")
            .unwrap();
        assert_eq!(f.rules.lock().len(), 3);
        assert!(Faults::validate("get:404x:0.1").is_err());
        assert!(Faults::validate("bogus:503:0.1").is_err());
        assert!(Faults::validate("get:503:1.5").is_err());
        assert!(Faults::validate("get:503").is_err());
    }

    #[test]
    fn counts_and_always() {
        let f = Faults::default();
        f.set("complete:error200:x2,head:delay=1ms:always").unwrap();
        assert_eq!(f.pick("complete").1, Some(FaultAction::Error200));
        assert_eq!(f.pick("complete").1, Some(FaultAction::Error200));
        assert_eq!(f.pick("complete").1, None);
        assert_eq!(f.pick("head").0, Some(Duration::from_millis(1)));
        assert_eq!(f.pick("get"), (None, None));
        f.set("write:500:always").unwrap();
        assert_eq!(f.pick("put_part").1, Some(FaultAction::Status(500)));
        assert_eq!(f.pick("get").1, None);
        assert_eq!(f.injected(), 4);
    }
}
