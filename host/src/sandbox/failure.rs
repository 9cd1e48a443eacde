//! How a call into a plugin can fail, and how a wasmtime error is read into one of these.
//! Every failure becomes a deny that names it (fail-closed).

use std::fmt;
use std::time::Duration;

use wasmtime::Trap;

use super::capabilities::Capability;
use super::state::SandboxTrap;

/// Why a plugin gave no usable answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The call ran past its epoch deadline (an endless loop, or simply too slow).
    TimeLimit { deadline: Duration },
    /// The plugin tried to grow its memory past the application's cap.
    MemoryLimit { limit_bytes: usize },
    /// The plugin recursed past the native stack limit.
    StackOverflow,
    /// The plugin made more host calls than one call may.
    HostCallBudget { limit: u32 },
    /// The plugin used an import it was not granted.
    CapabilityDenied(Capability),
    /// The plugin trapped: a panic (Rust guests abort on panic), `unreachable`, an
    /// out-of-bounds access, a division by zero...
    Trap(String),
    /// The plugin answered, but the answer was not acceptable: an invalid encoding, an
    /// out-of-range variant, a reason or body over the size limit.
    Malformed(String),
    /// The plugin could not be instantiated (e.g. the instance pool is exhausted).
    Instantiation(String),
    /// The plugin failed too often in a row and is out of service for a while.
    Quarantined {
        consecutive_failures: u32,
        remaining: Duration,
    },
}

impl Failure {
    /// A short stable name for metrics and JSON (`time-limit`, `memory-limit`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Failure::TimeLimit { .. } => "time-limit",
            Failure::MemoryLimit { .. } => "memory-limit",
            Failure::StackOverflow => "stack-overflow",
            Failure::HostCallBudget { .. } => "host-call-budget",
            Failure::CapabilityDenied(_) => "capability-denied",
            Failure::Trap(_) => "trap",
            Failure::Malformed(_) => "malformed-answer",
            Failure::Instantiation(_) => "instantiation",
            Failure::Quarantined { .. } => "quarantined",
        }
    }

    /// Reads a wasmtime error from a call. `memory_exceeded` tells whether the store's
    /// limiter refused a growth during the call: a Rust guest then aborts, which shows up as
    /// a plain trap that would otherwise hide the cause.
    pub(crate) fn from_call_error(
        error: &wasmtime::Error,
        memory_exceeded: bool,
        memory_limit: usize,
        deadline: Duration,
    ) -> Failure {
        if let Some(trap) = error.downcast_ref::<SandboxTrap>() {
            return match trap {
                SandboxTrap::HostCallBudget { limit } => Failure::HostCallBudget { limit: *limit },
                SandboxTrap::CapabilityDenied(capability) => Failure::CapabilityDenied(*capability),
                SandboxTrap::WouldBlock(_)
                | SandboxTrap::RandomBudget { .. }
                | SandboxTrap::ResourceHandles { .. } => Failure::Trap(trap.to_string()),
            };
        }
        if let Some(trap) = error.downcast_ref::<Trap>() {
            return match trap {
                Trap::Interrupt => Failure::TimeLimit { deadline },
                Trap::StackOverflow => Failure::StackOverflow,
                _ if memory_exceeded => Failure::MemoryLimit {
                    limit_bytes: memory_limit,
                },
                Trap::MemoryOutOfBounds => Failure::Trap(
                    "out-of-bounds memory access (a bad pointer, or the plugin's own stack in \
                     linear memory overflowed)"
                        .into(),
                ),
                Trap::UnreachableCodeReached => Failure::Trap(
                    "unreachable code reached (a Rust plugin panicked or aborted)".into(),
                ),
                other => Failure::Trap(other.to_string()),
            };
        }
        if memory_exceeded {
            return Failure::MemoryLimit {
                limit_bytes: memory_limit,
            };
        }
        // Errors that are neither traps nor ours come from lifting the answer out of the
        // guest: a bad variant discriminant, invalid UTF-8, a pointer out of bounds.
        Failure::Malformed(format!("{error:#}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::TimeLimit { deadline } => {
                write!(
                    formatter,
                    "exceeded its time limit of {} ms (epoch deadline)",
                    deadline.as_millis()
                )
            }
            Failure::MemoryLimit { limit_bytes } => {
                write!(
                    formatter,
                    "exceeded its memory limit of {} KiB",
                    limit_bytes / 1024
                )
            }
            Failure::StackOverflow => {
                formatter.write_str("overflowed its stack (stack overflow trap)")
            }
            Failure::HostCallBudget { limit } => {
                write!(formatter, "exhausted its host-call budget of {limit} calls")
            }
            Failure::CapabilityDenied(capability) => {
                write!(
                    formatter,
                    "used the `{capability}` capability without a grant"
                )
            }
            Failure::Trap(what) => write!(formatter, "trapped: {what}"),
            Failure::Malformed(what) => write!(formatter, "gave a malformed answer: {what}"),
            Failure::Instantiation(what) => write!(formatter, "could not be instantiated: {what}"),
            Failure::Quarantined {
                consecutive_failures,
                remaining,
            } => write!(
                formatter,
                "is quarantined after {consecutive_failures} consecutive failures ({} ms left)",
                remaining.as_millis()
            ),
        }
    }
}
