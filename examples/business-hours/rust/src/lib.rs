//! Business hours, in Rust: the same policy as examples/business-hours/python and
//! examples/business-hours/js, so that the three can be compared (BENCHMARKS.md).
//!
//! Reads (retrieve, discovery) are always allowed; anything else only between the configured
//! hours, UTC, of the request time (the only clock a plugin has). The configuration is
//! `{"opens": 8, "closes": 18}` (those are the defaults); a configuration that does not make
//! sense denies every request it would have to decide (fail-closed).

use palisade_sdk::config::Config;
use palisade_sdk::{Authorizer, Decision, Request};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Hours {
    opens: u8,
    closes: u8,
}

impl Default for Hours {
    fn default() -> Self {
        Hours {
            opens: 8,
            closes: 18,
        }
    }
}

impl Hours {
    fn check(&self) -> Result<(), &'static str> {
        if self.opens > 24 || self.closes > 24 {
            Err("opens and closes must be hours from 0 to 24")
        } else if self.opens >= self.closes {
            Err("opens must be before closes")
        } else {
            Ok(())
        }
    }
}

static HOURS: Config<Hours> = Config::new();

struct BusinessHours;

impl Authorizer for BusinessHours {
    fn authorize(request: Request) -> Decision {
        if request.operation.is_read() {
            return Decision::Permit;
        }
        let hours = match HOURS.get() {
            Ok(hours) => hours,
            Err(reason) => return Decision::Deny(reason.to_string()),
        };
        if let Err(problem) = hours.check() {
            return Decision::Deny(format!("invalid plugin configuration: {problem}"));
        }
        let hour = (request.request_time / 3600) % 24;
        if (u64::from(hours.opens)..u64::from(hours.closes)).contains(&hour) {
            Decision::Permit
        } else {
            Decision::Deny(format!(
                "{} outside business hours",
                request.operation.name()
            ))
        }
    }
}

palisade_sdk::export_authorizer!(BusinessHours);
