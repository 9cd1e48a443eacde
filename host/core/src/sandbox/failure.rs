//! How a call into a plugin can fail, and how a wasmtime error is read into one of these.
//! Every failure becomes a deny that names it (fail-closed), for its cause: an `exit()`, a
//! resource cap or a host error is never reported as a malformed answer, and no raw wasm
//! backtrace ever reaches a decision or the audit (it goes to the operator log at debug
//! level only).

use std::fmt;
use std::time::Duration;

use wasmtime::Trap;

use super::capabilities::Capability;
use super::convert::escape_text;
use super::quarantine::QuarantineScope;
use super::state::SandboxTrap;

/// Why a plugin gave no usable answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The call ran past its epoch deadline (an endless loop, or simply too slow).
    TimeLimit {
        /** The deadline that ran out. */
        deadline: Duration,
    },
    /// The plugin tried to grow its memory past the application's cap.
    MemoryLimit {
        /** The limit, in bytes. */
        limit_bytes: usize,
    },
    /// The plugin recursed past the native stack limit.
    StackOverflow,
    /// The plugin made more host calls than one call may.
    HostCallBudget {
        /** The limit. */
        limit: u32,
    },
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
    /// The plugin called WASI `exit` instead of answering.
    Exit {
        /** The exit code. */
        code: i32,
    },
    /// The plugin went past a limit on what one instance or crossing may hold, other than
    /// memory: more WASI resources (handles: streams, pollables...) than one instance may
    /// hold, the component handle table's cap, or more bytes in one crossing between plugin
    /// and host than the per-call copy limit. The text names the limit.
    ResourceLimit(String),
    /// A host import the plugin called failed in the host, for a reason that is neither a
    /// budget nor a capability (e.g. a handle the plugin passed does not exist).
    Host(String),
    /// An authenticator's identity (subject or a role) is not usable as an identity: it holds
    /// control characters or bidirectional-text controls, or is empty.
    InvalidIdentity(String),
    /// The plugin failed too often recently and is out of service for a while, for the
    /// request's originator or for the whole application (see `quarantine.rs`).
    Quarantined {
        /// For whom the plugin is quarantined.
        scope: QuarantineScope,
        /// How long the quarantine still lasts.
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
            Failure::Exit { .. } => "exit",
            Failure::ResourceLimit(_) => "resource-limit",
            Failure::Host(_) => "host-error",
            Failure::InvalidIdentity(_) => "invalid-identity",
            Failure::Quarantined { .. } => "quarantined",
        }
    }

    /// Whether the failure is the plugin's doing and counts towards its quarantine. Not
    /// counted: a failed instantiation (the shared instance pool may simply be exhausted by
    /// load), a host error (unless it burnt the plugin's time, which the caller checks), and
    /// a refusal by the quarantine itself.
    pub fn blames_plugin(&self) -> bool {
        !matches!(
            self,
            Failure::Instantiation(_) | Failure::Host(_) | Failure::Quarantined { .. }
        )
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
        if let Some(exit) = error.downcast_ref::<super::wasi::Exit>() {
            return Failure::Exit { code: exit.0 };
        }
        // The message without the backtrace wasmtime wraps around it.
        let cause = escape_text(&error.root_cause().to_string()).into_owned();
        if let Some(table) = error.downcast_ref::<wasmtime::component::ResourceTableError>() {
            return match table {
                wasmtime::component::ResourceTableError::Full => Failure::ResourceLimit(cause),
                _ => Failure::Host(cause),
            };
        }
        // The component model's own handle table per store ("cannot allocate another
        // handle: store handle limit exceeded"), which has no error type of its own.
        if cause.contains("handle limit exceeded")
            || cause.contains("another handle")
            || cause.contains("too many active lends")
        {
            return Failure::ResourceLimit(format!("component handle-table limit: {cause}"));
        }
        // The per-crossing copy limit the sandbox sets as wasmtime's hostcall fuel (a string
        // or list larger than it, in either direction); its error type is private to wasmtime.
        if cause.contains("too much data is being copied") {
            return Failure::ResourceLimit(format!("per-call copy limit (hostcall fuel): {cause}"));
        }
        if error.downcast_ref::<wasmtime::WasmBacktrace>().is_some() {
            // Raised while guest code was on the stack: by a host import it called.
            tracing::debug!(error = %escape_text(&format!("{error:?}")), "host error in a plugin call");
            return Failure::Host(cause);
        }
        // Errors raised with no guest code running come from lifting the answer out of the
        // guest: a bad variant discriminant, invalid UTF-8, a pointer out of bounds.
        Failure::Malformed(cause)
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
            Failure::Exit { code } => {
                write!(formatter, "called exit({code}) instead of answering")
            }
            Failure::ResourceLimit(what) => {
                write!(formatter, "exceeded a resource limit: {what}")
            }
            Failure::Host(what) => write!(formatter, "hit a host error in an import: {what}"),
            Failure::InvalidIdentity(what) => {
                write!(formatter, "returned an invalid identity: {what}")
            }
            Failure::Quarantined { scope, remaining } => match scope {
                QuarantineScope::Originator => write!(
                    formatter,
                    "is quarantined for this originator after repeated failures ({} ms left)",
                    remaining.as_millis()
                ),
                QuarantineScope::Application => write!(
                    formatter,
                    "is quarantined after repeated failures across originators ({} ms left)",
                    remaining.as_millis()
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(error: wasmtime::Error) -> Failure {
        Failure::from_call_error(&error, false, 16 << 20, Duration::from_millis(50))
    }

    #[test]
    fn exit_and_resource_caps_are_named_for_what_they_are() {
        assert_eq!(
            read(wasmtime::Error::new(super::super::wasi::Exit(2))),
            Failure::Exit { code: 2 }
        );
        let full = read(wasmtime::Error::new(
            wasmtime::component::ResourceTableError::Full,
        ));
        assert_eq!(full.code(), "resource-limit", "{full}");
        let handles = read(wasmtime::format_err!(
            "cannot allocate another handle: store handle limit exceeded"
        ));
        assert_eq!(handles.code(), "resource-limit", "{handles}");
        assert!(
            handles.to_string().contains("handle-table limit"),
            "{handles}"
        );
        let lends = read(wasmtime::format_err!(
            "cannot lend resource: too many active lends"
        ));
        assert_eq!(lends.code(), "resource-limit", "{lends}");
        let copied = read(
            wasmtime::format_err!(
                "too much data is being copied between the host and the guest: fuel \
                 allocated for hostcalls has been exhausted"
            )
            .context("error while executing at wasm backtrace:\n    0: 0x1 - <unknown>!f"),
        );
        assert_eq!(copied.code(), "resource-limit", "{copied}");
        assert!(
            copied.to_string().contains("per-call copy limit"),
            "{copied}"
        );
        let missing = read(wasmtime::Error::new(
            wasmtime::component::ResourceTableError::NotPresent,
        ));
        assert_eq!(missing.code(), "host-error", "{missing}");
        assert!(!missing.blames_plugin());
    }

    #[test]
    fn only_the_root_cause_is_kept_and_it_is_escaped() {
        let error = wasmtime::format_err!("invalid variant discriminant\n\u{1b}[2J")
            .context("error while executing at wasm backtrace:\n    0: 0x1234 - <unknown>!f");
        let failure = read(error);
        assert_eq!(failure.code(), "malformed-answer");
        let text = failure.to_string();
        assert!(!text.contains("backtrace") && !text.contains('\n') && !text.contains('\u{1b}'));
        assert!(
            text.contains(r"invalid variant discriminant\n\u{1b}[2J"),
            "{text}"
        );
    }

    #[test]
    fn failures_the_host_or_the_quarantine_made_are_not_held_against_the_plugin() {
        assert!(!Failure::Instantiation("pool exhausted".into()).blames_plugin());
        assert!(!Failure::Host("x".into()).blames_plugin());
        assert!(!Failure::Quarantined {
            scope: QuarantineScope::Application,
            remaining: Duration::from_secs(1)
        }
        .blames_plugin());
        for failure in [
            Failure::TimeLimit {
                deadline: Duration::from_millis(50),
            },
            Failure::Exit { code: 1 },
            Failure::ResourceLimit("x".into()),
            Failure::InvalidIdentity("x".into()),
            Failure::Malformed("x".into()),
            Failure::Trap("x".into()),
        ] {
            assert!(failure.blames_plugin(), "{failure}");
        }
    }
}
