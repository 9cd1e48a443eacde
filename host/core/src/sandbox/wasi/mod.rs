//! The sandbox's own WASI 0.2: a fixed host that grants nothing and never waits (SER-001,
//! SER-024).
//!
//! Guests built with Rust's std, componentize-py or componentize-js import WASI even when
//! they never use it, so every interface of `wasi:cli/imports` is linked (the WIT is vendored
//! in `host/core/wit/wasi`). Behind it there is no context to build per instance, no async
//! runtime and no host resource at all:
//!
//! - environment and arguments are empty, there is no initial directory, no preopened
//!   directory (so no filesystem descriptor can ever exist) and no terminal;
//! - stdin is closed, stdout and stderr are sinks whose bytes per call are bounded (past the
//!   bound they are dropped and counted, for `palisade_plugin_output_dropped_bytes_total`);
//! - both clocks are frozen at zero, so the request time the host passes in is the only
//!   time a plugin knows; a pollable for a later instant is never ready, and waiting on it
//!   traps with [`SandboxTrap::WouldBlock`] instead of holding a host thread where the epoch
//!   deadline cannot reach it;
//! - `wasi:random` is real randomness (Rust's std needs it for hash seeds, and it reveals
//!   nothing about the gateway), bounded per request and per call;
//! - sockets answer `access-denied` (a TCP or UDP socket, a name look-up): the guest gets an
//!   error it can report, never a host effect;
//! - `exit` ends the call with [`Exit`], which the sandbox reports as such.
//!
//! Every call spends one unit of the host-call budget, and everything a guest can create
//! (stream handles, pollables, the network handle) lands in the instance's resource table,
//! whose capacity is the resource-handle cap: a call past it traps naming the cap. Resources
//! the host never hands out (descriptors, sockets, terminals, I/O errors) are uninhabited
//! types: their methods cannot be reached with a handle the guest could hold
//! (`denied.rs`).

mod denied;

use std::sync::atomic::{AtomicU64, Ordering};

use rand::RngCore;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceTableError};

use super::state::{HostState, SandboxTrap, RANDOM_BYTES_PER_CALL, RANDOM_BYTES_PER_REQUEST};

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/wasi",
        world: "palisade:deny-all-wasi/host",
        imports: { default: trappable },
        with: {
            "wasi:io/poll.pollable": super::Pollable,
            "wasi:io/streams.input-stream": super::InputStream,
            "wasi:io/streams.output-stream": super::OutputStream,
            "wasi:io/error.error": super::denied::IoError,
            "wasi:cli/terminal-input.terminal-input": super::denied::TerminalInput,
            "wasi:cli/terminal-output.terminal-output": super::denied::TerminalOutput,
            "wasi:filesystem/types.descriptor": super::denied::Descriptor,
            "wasi:filesystem/types.directory-entry-stream": super::denied::DirectoryEntryStream,
            "wasi:sockets/network.network": super::Network,
            "wasi:sockets/tcp.tcp-socket": super::denied::TcpSocket,
            "wasi:sockets/udp.udp-socket": super::denied::UdpSocket,
            "wasi:sockets/udp.incoming-datagram-stream": super::denied::IncomingDatagramStream,
            "wasi:sockets/udp.outgoing-datagram-stream": super::denied::OutgoingDatagramStream,
            "wasi:sockets/ip-name-lookup.resolve-address-stream": super::denied::ResolveAddressStream,
        },
    });
}

use generated::wasi::cli::{environment, exit, stderr, stdin, stdout};
use generated::wasi::cli::{terminal_stderr, terminal_stdin, terminal_stdout};
use generated::wasi::clocks::{monotonic_clock, timezone, wall_clock};
use generated::wasi::io::{poll, streams};
use generated::wasi::random::{insecure, insecure_seed, random};

/// Most bytes one `blocking-write-and-flush` may carry (the WIT's contract: a guest that
/// passes more traps, as wasmtime-wasi made it).
const BLOCKING_WRITE_BYTES: u64 = 4096;

/// What `check-write` grants: writes are never refused (past the call's output bound they
/// are dropped), so any size a guest asks for its buffers is fine; this is the one
/// wasmtime-wasi's sinks gave.
const WRITE_PERMIT: u64 = 64 << 10;

/// stdout and stderr bytes dropped past `state::OUTPUT_BYTES_PER_CALL`, by every plugin of the
/// process since it started.
static DROPPED_OUTPUT_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes of stdout and stderr plugins wrote past their per-call bound, dropped (for the
/// `palisade_plugin_output_dropped_bytes_total` metric).
pub fn dropped_output_bytes() -> u64 {
    DROPPED_OUTPUT_BYTES.load(Ordering::Relaxed)
}

/// How a guest ended its call through `wasi:cli/exit`: the status it gave (0 for `ok`, 1 for
/// `err`, or the code of `exit-with-code`). Raised as the call's error, like a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the plugin exited with status {0}")]
pub(crate) struct Exit(pub(crate) i32);

/// Links every WASI 0.2 interface into `linker`, implemented by the deny-all host.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    generated::Host_::add_to_linker::<HostState, DenyAllWasi>(
        linker,
        &generated::LinkOptions::default(),
        |state| DenyAll(state),
    )
}

/// The binding set of this module.
struct DenyAllWasi;

impl HasData for DenyAllWasi {
    type Data<'a> = DenyAll<'a>;
}

/// A plugin's store data, seen through the WASI bindings.
pub(crate) struct DenyAll<'a>(&'a mut HostState);

/// A pollable: what subscribing to a stream or a clock gives. Streams are always ready
/// (stdin is closed, the outputs are sinks); a clock subscription is ready only if its
/// instant has come, which on the frozen clock means it was for time zero.
pub struct Pollable {
    ready: bool,
}

/// stdin: closed, so every read answers `closed` at once.
pub struct InputStream;

/// stdout or stderr: a sink.
pub struct OutputStream;

/// The network handle `instance-network` gives: it leads nowhere, every socket and name
/// look-up is refused.
pub struct Network;

impl DenyAll<'_> {
    /// Spends one unit of the host-call budget.
    pub(super) fn charge(&mut self) -> wasmtime::Result<()> {
        self.0.spend_host_call()
    }

    pub(super) fn table(&mut self) -> &mut ResourceTable {
        &mut self.0.table
    }

    /// Puts `entry` in the instance's resource table, naming the resource-handle cap when
    /// the table is full.
    pub(super) fn push<T: Send + 'static>(&mut self, entry: T) -> wasmtime::Result<Resource<T>> {
        self.0.table.push(entry).map_err(|error| match error {
            ResourceTableError::Full => wasmtime::Error::new(SandboxTrap::ResourceHandles {
                limit: self.0.limits.resource_handles,
            }),
            other => wasmtime::Error::new(other),
        })
    }

    /// Takes `len` bytes from the call's random-byte budget, or traps.
    fn take_random(&mut self, len: u64) -> wasmtime::Result<usize> {
        let left = self.0.random_left;
        match usize::try_from(len) {
            Ok(len) if len <= RANDOM_BYTES_PER_REQUEST && len <= left => {
                self.0.random_left = left - len;
                Ok(len)
            }
            _ => Err(wasmtime::Error::new(SandboxTrap::RandomBudget {
                requested: len,
                left,
                per_request: RANDOM_BYTES_PER_REQUEST,
                per_call: RANDOM_BYTES_PER_CALL,
            })),
        }
    }

    /// Counts `len` bytes written to stdout or stderr against the call's bound, after
    /// checking that `stream` is a live output stream (a bad handle traps). The bytes of a
    /// write that crosses the bound are dropped (nothing reaches anything either way: the
    /// streams are sinks), and the part past the bound is counted as dropped.
    fn write_output(
        &mut self,
        stream: &Resource<OutputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<(), streams::StreamError>> {
        self.0.table.get(stream)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let left = self.0.output_left;
        if len <= left {
            self.0.output_left = left - len;
        } else {
            self.0.output_left = 0;
            let dropped = u64::try_from(len - left).unwrap_or(u64::MAX);
            DROPPED_OUTPUT_BYTES.fetch_add(dropped, Ordering::Relaxed);
        }
        Ok(Ok(()))
    }

    /// A pollable for the frozen monotonic clock reaching `instant`.
    fn clock_pollable(&mut self, instant: u64) -> wasmtime::Result<Resource<Pollable>> {
        // An instant has come when it is not after now; now is zero, the earliest there is.
        self.push(Pollable {
            ready: instant == FROZEN_MONOTONIC_NANOS,
        })
    }
}

/// What both clocks read: zero, always.
const FROZEN_MONOTONIC_NANOS: u64 = 0;

/// The trap for waiting on something that is not ready: nothing in the sandbox ever
/// becomes ready later.
fn would_block(what: &'static str) -> wasmtime::Error {
    wasmtime::Error::new(SandboxTrap::WouldBlock(what))
}

impl poll::Host for DenyAll<'_> {
    /// The indices of the ready pollables; when none is ready, the call would wait forever
    /// and traps instead.
    fn poll(&mut self, pollables: Vec<Resource<Pollable>>) -> wasmtime::Result<Vec<u32>> {
        self.charge()?;
        if pollables.is_empty() {
            return Err(wasmtime::format_err!("empty poll list"));
        }
        let mut ready = Vec::new();
        for (index, pollable) in pollables.iter().enumerate() {
            if self.table().get(pollable)?.ready {
                ready.push(u32::try_from(index)?);
            }
        }
        if ready.is_empty() {
            return Err(would_block("polling (a sleep or blocking I/O)"));
        }
        Ok(ready)
    }
}

impl poll::HostPollable for DenyAll<'_> {
    fn ready(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<bool> {
        self.charge()?;
        Ok(self.table().get(&pollable)?.ready)
    }

    fn block(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<()> {
        self.charge()?;
        if self.table().get(&pollable)?.ready {
            return Ok(());
        }
        Err(would_block(
            "waiting on a pollable (a sleep or blocking I/O)",
        ))
    }

    fn drop(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<()> {
        self.charge()?;
        self.table().delete(pollable)?;
        Ok(())
    }
}

impl streams::Host for DenyAll<'_> {}

/// stdin is closed: reads end at once with `closed`, as at the end of an empty input.
impl streams::HostInputStream for DenyAll<'_> {
    fn read(
        &mut self,
        stream: Resource<InputStream>,
        _len: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, streams::StreamError>> {
        self.charge()?;
        self.table().get(&stream)?;
        Ok(Err(streams::StreamError::Closed))
    }

    fn blocking_read(
        &mut self,
        stream: Resource<InputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, streams::StreamError>> {
        self.read(stream, len)
    }

    fn skip(
        &mut self,
        stream: Resource<InputStream>,
        _len: u64,
    ) -> wasmtime::Result<Result<u64, streams::StreamError>> {
        self.charge()?;
        self.table().get(&stream)?;
        Ok(Err(streams::StreamError::Closed))
    }

    fn blocking_skip(
        &mut self,
        stream: Resource<InputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<u64, streams::StreamError>> {
        self.skip(stream, len)
    }

    fn subscribe(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<Resource<Pollable>> {
        self.charge()?;
        self.table().get(&stream)?;
        self.push(Pollable { ready: true })
    }

    fn drop(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<()> {
        self.charge()?;
        self.table().delete(stream)?;
        Ok(())
    }
}

/// stdout and stderr: sinks that are always ready, bounded per call.
impl streams::HostOutputStream for DenyAll<'_> {
    fn check_write(
        &mut self,
        stream: Resource<OutputStream>,
    ) -> wasmtime::Result<Result<u64, streams::StreamError>> {
        self.charge()?;
        self.table().get(&stream)?;
        Ok(Ok(WRITE_PERMIT))
    }

    fn write(
        &mut self,
        stream: Resource<OutputStream>,
        contents: Vec<u8>,
    ) -> wasmtime::Result<Result<(), streams::StreamError>> {
        self.charge()?;
        self.write_output(&stream, contents.len() as u64)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        contents: Vec<u8>,
    ) -> wasmtime::Result<Result<(), streams::StreamError>> {
        self.charge()?;
        if contents.len() as u64 > BLOCKING_WRITE_BYTES {
            return Err(wasmtime::format_err!(
                "Buffer too large for blocking-write-and-flush (expected at most 4096)"
            ));
        }
        self.write_output(&stream, contents.len() as u64)
    }

    fn flush(
        &mut self,
        stream: Resource<OutputStream>,
    ) -> wasmtime::Result<Result<(), streams::StreamError>> {
        self.charge()?;
        self.table().get(&stream)?;
        Ok(Ok(()))
    }

    fn blocking_flush(
        &mut self,
        stream: Resource<OutputStream>,
    ) -> wasmtime::Result<Result<(), streams::StreamError>> {
        self.flush(stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<OutputStream>,
    ) -> wasmtime::Result<Resource<Pollable>> {
        self.charge()?;
        self.table().get(&stream)?;
        self.push(Pollable { ready: true })
    }

    fn write_zeroes(
        &mut self,
        stream: Resource<OutputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<(), streams::StreamError>> {
        self.charge()?;
        self.write_output(&stream, len)
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<(), streams::StreamError>> {
        self.charge()?;
        if len > BLOCKING_WRITE_BYTES {
            return Err(wasmtime::format_err!(
                "Buffer too large for blocking-write-zeroes-and-flush (expected at most 4096)"
            ));
        }
        self.write_output(&stream, len)
    }

    /// The only input stream is stdin, which is closed: nothing is spliced.
    fn splice(
        &mut self,
        stream: Resource<OutputStream>,
        source: Resource<InputStream>,
        _len: u64,
    ) -> wasmtime::Result<Result<u64, streams::StreamError>> {
        self.charge()?;
        self.table().get(&stream)?;
        self.table().get(&source)?;
        Ok(Err(streams::StreamError::Closed))
    }

    fn blocking_splice(
        &mut self,
        stream: Resource<OutputStream>,
        source: Resource<InputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<u64, streams::StreamError>> {
        self.splice(stream, source, len)
    }

    fn drop(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<()> {
        self.charge()?;
        self.table().delete(stream)?;
        Ok(())
    }
}

impl environment::Host for DenyAll<'_> {
    fn get_environment(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        self.charge()?;
        Ok(Vec::new())
    }

    fn get_arguments(&mut self) -> wasmtime::Result<Vec<String>> {
        self.charge()?;
        Ok(Vec::new())
    }

    fn initial_cwd(&mut self) -> wasmtime::Result<Option<String>> {
        self.charge()?;
        Ok(None)
    }
}

/// Not charged: ending the call is what the budget is for, and the status stays the cause.
impl exit::Host for DenyAll<'_> {
    fn exit(&mut self, status: Result<(), ()>) -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(Exit(if status.is_ok() {
            0
        } else {
            1
        })))
    }

    fn exit_with_code(&mut self, status_code: u8) -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(Exit(i32::from(status_code))))
    }
}

/// The standard streams: each `get-*` makes a new handle, which a leaking plugin keeps.
impl stdin::Host for DenyAll<'_> {
    fn get_stdin(&mut self) -> wasmtime::Result<Resource<InputStream>> {
        self.charge()?;
        self.push(InputStream)
    }
}

impl stdout::Host for DenyAll<'_> {
    fn get_stdout(&mut self) -> wasmtime::Result<Resource<OutputStream>> {
        self.charge()?;
        self.push(OutputStream)
    }
}

impl stderr::Host for DenyAll<'_> {
    fn get_stderr(&mut self) -> wasmtime::Result<Resource<OutputStream>> {
        self.charge()?;
        self.push(OutputStream)
    }
}

/// No stream is a terminal.
impl terminal_stdin::Host for DenyAll<'_> {
    fn get_terminal_stdin(&mut self) -> wasmtime::Result<Option<Resource<denied::TerminalInput>>> {
        self.charge()?;
        Ok(None)
    }
}

impl terminal_stdout::Host for DenyAll<'_> {
    fn get_terminal_stdout(
        &mut self,
    ) -> wasmtime::Result<Option<Resource<denied::TerminalOutput>>> {
        self.charge()?;
        Ok(None)
    }
}

impl terminal_stderr::Host for DenyAll<'_> {
    fn get_terminal_stderr(
        &mut self,
    ) -> wasmtime::Result<Option<Resource<denied::TerminalOutput>>> {
        self.charge()?;
        Ok(None)
    }
}

/// The frozen monotonic clock: each subscription makes a new pollable, which a leaking
/// plugin keeps.
impl monotonic_clock::Host for DenyAll<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        self.charge()?;
        Ok(FROZEN_MONOTONIC_NANOS)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        self.charge()?;
        Ok(1_000_000_000)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<Pollable>> {
        self.charge()?;
        self.clock_pollable(when)
    }

    fn subscribe_duration(
        &mut self,
        when: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<Pollable>> {
        self.charge()?;
        self.clock_pollable(FROZEN_MONOTONIC_NANOS.saturating_add(when))
    }
}

/// The wall clock reads the epoch.
impl wall_clock::Host for DenyAll<'_> {
    fn now(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        self.charge()?;
        Ok(wall_clock::Datetime {
            seconds: 0,
            nanoseconds: 0,
        })
    }

    fn resolution(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        self.charge()?;
        Ok(wall_clock::Datetime {
            seconds: 1,
            nanoseconds: 0,
        })
    }
}

/// The time zone is UTC (linked only if a guest is ever allowed the unstable interface).
impl timezone::Host for DenyAll<'_> {
    fn display(
        &mut self,
        _when: wall_clock::Datetime,
    ) -> wasmtime::Result<timezone::TimezoneDisplay> {
        self.charge()?;
        Ok(timezone::TimezoneDisplay {
            utc_offset: 0,
            name: "UTC".into(),
            in_daylight_saving_time: false,
        })
    }

    fn utc_offset(&mut self, _when: wall_clock::Datetime) -> wasmtime::Result<i32> {
        self.charge()?;
        Ok(0)
    }
}

/// `wasi:random`, bounded: the host makes the bytes before the plugin sees them, in a host
/// call the epoch deadline cannot interrupt, so each request is small and each call's total
/// is bounded (64 MiB in one request took half a second and 64 MiB of host memory).
impl random::Host for DenyAll<'_> {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.charge()?;
        let len = self.take_random(len)?;
        let mut bytes = vec![0; len];
        rand::thread_rng().fill_bytes(&mut bytes);
        Ok(bytes)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        self.charge()?;
        self.take_random(8)?;
        Ok(rand::thread_rng().next_u64())
    }
}

/// The same source: a cryptographically secure one is no worse for a guest that asked for
/// less.
impl insecure::Host for DenyAll<'_> {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        random::Host::get_random_bytes(self, len)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        random::Host::get_random_u64(self)
    }
}

impl insecure_seed::Host for DenyAll<'_> {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        self.charge()?;
        let mut rng = rand::thread_rng();
        Ok((rng.next_u64(), rng.next_u64()))
    }
}

#[cfg(test)]
mod tests {
    //! The interfaces the hostile guest cannot reach through Rust's std (exit, terminals,
    //! preopens, name look-up answers, stdin, polling), called as a guest's import would call
    //! them, on a real store's data.

    use std::sync::Arc;

    use generated::wasi::filesystem::preopens;
    use generated::wasi::sockets::{
        instance_network, ip_name_lookup, network, tcp_create_socket, udp_create_socket,
    };

    use super::*;
    use crate::sandbox::capabilities::{Capabilities, GroupDirectory, KvNamespace, StaticKeys};
    use crate::sandbox::limits::SandboxLimits;
    use crate::sandbox::state::{AppEnvironment, PluginGrant, OUTPUT_BYTES_PER_CALL};

    fn state(host_calls: u32) -> HostState {
        let env = AppEnvironment {
            name: "app".into(),
            kv: KvNamespace::new(),
            groups: GroupDirectory::new(Default::default()),
            keys: Arc::new(StaticKeys::new()),
        };
        let grant = PluginGrant {
            app: "app".into(),
            name: "plugin".into(),
            config_json: "{}".into(),
            capabilities: Capabilities::default(),
        };
        let limits = SandboxLimits::default()
            .host_calls(host_calls)
            .resource_handles(4);
        HostState::new(Arc::new(env), Arc::new(grant), Arc::new(limits))
    }

    fn trap(error: wasmtime::Error) -> SandboxTrap {
        error
            .downcast::<SandboxTrap>()
            .expect("a trap of the sandbox's own")
    }

    #[test]
    fn nothing_is_there_to_find() {
        let mut state = state(100);
        let mut wasi = DenyAll(&mut state);
        assert!(environment::Host::get_environment(&mut wasi)
            .unwrap()
            .is_empty());
        assert!(environment::Host::get_arguments(&mut wasi)
            .unwrap()
            .is_empty());
        assert_eq!(environment::Host::initial_cwd(&mut wasi).unwrap(), None);
        assert!(preopens::Host::get_directories(&mut wasi)
            .unwrap()
            .is_empty());
        assert!(terminal_stdin::Host::get_terminal_stdin(&mut wasi)
            .unwrap()
            .is_none());
        assert!(terminal_stdout::Host::get_terminal_stdout(&mut wasi)
            .unwrap()
            .is_none());
        assert!(terminal_stderr::Host::get_terminal_stderr(&mut wasi)
            .unwrap()
            .is_none());
        let stdin = stdin::Host::get_stdin(&mut wasi).unwrap();
        assert!(matches!(
            streams::HostInputStream::blocking_read(&mut wasi, stdin, 100).unwrap(),
            Err(streams::StreamError::Closed)
        ));
        assert_eq!(wall_clock::Host::now(&mut wasi).unwrap().seconds, 0);
        assert_eq!(monotonic_clock::Host::now(&mut wasi).unwrap(), 0);
    }

    #[test]
    fn sockets_and_look_ups_are_refused_with_an_error_code() {
        let mut state = state(100);
        let mut wasi = DenyAll(&mut state);
        let family = network::IpAddressFamily::Ipv4;
        assert!(matches!(
            tcp_create_socket::Host::create_tcp_socket(&mut wasi, family).unwrap(),
            Err(network::ErrorCode::AccessDenied)
        ));
        assert!(matches!(
            udp_create_socket::Host::create_udp_socket(&mut wasi, family).unwrap(),
            Err(network::ErrorCode::AccessDenied)
        ));
        let network = instance_network::Host::instance_network(&mut wasi).unwrap();
        assert!(matches!(
            ip_name_lookup::Host::resolve_addresses(&mut wasi, network, "localhost".into())
                .unwrap(),
            Err(network::ErrorCode::AccessDenied)
        ));
    }

    #[test]
    fn exit_ends_the_call_with_its_status() {
        let mut state = state(100);
        let mut wasi = DenyAll(&mut state);
        let status = |error: wasmtime::Error| error.downcast::<Exit>().unwrap();
        assert_eq!(
            status(exit::Host::exit(&mut wasi, Ok(())).unwrap_err()),
            Exit(0)
        );
        assert_eq!(
            status(exit::Host::exit(&mut wasi, Err(())).unwrap_err()),
            Exit(1)
        );
        assert_eq!(
            status(exit::Host::exit_with_code(&mut wasi, 42).unwrap_err()),
            Exit(42)
        );
    }

    #[test]
    fn only_what_is_ready_is_answered_and_waiting_traps() {
        let mut state = state(100);
        let mut wasi = DenyAll(&mut state);
        let now = monotonic_clock::Host::subscribe_duration(&mut wasi, 0).unwrap();
        let later = monotonic_clock::Host::subscribe_duration(&mut wasi, 1).unwrap();
        let ready = poll::Host::poll(
            &mut wasi,
            vec![
                Resource::new_borrow(later.rep()),
                Resource::new_borrow(now.rep()),
            ],
        )
        .unwrap();
        assert_eq!(ready, [1]);
        assert!(!poll::HostPollable::ready(&mut wasi, Resource::new_borrow(later.rep())).unwrap());
        assert_eq!(
            trap(poll::Host::poll(&mut wasi, vec![Resource::new_borrow(later.rep())]).unwrap_err()),
            SandboxTrap::WouldBlock("polling (a sleep or blocking I/O)")
        );
        assert!(matches!(
            trap(poll::HostPollable::block(&mut wasi, later).unwrap_err()),
            SandboxTrap::WouldBlock(_)
        ));
        assert!(poll::Host::poll(&mut wasi, Vec::new()).is_err());
    }

    #[test]
    fn every_call_is_charged_and_handles_are_capped() {
        let mut state = state(3);
        let mut wasi = DenyAll(&mut state);
        for _ in 0..3 {
            environment::Host::get_environment(&mut wasi).unwrap();
        }
        assert_eq!(
            trap(environment::Host::get_environment(&mut wasi).unwrap_err()),
            SandboxTrap::HostCallBudget { limit: 3 }
        );

        let mut state = self::state(100);
        let mut wasi = DenyAll(&mut state);
        for _ in 0..4 {
            stdout::Host::get_stdout(&mut wasi).unwrap();
        }
        assert_eq!(
            trap(stderr::Host::get_stderr(&mut wasi).unwrap_err()),
            SandboxTrap::ResourceHandles { limit: 4 }
        );
    }

    #[test]
    fn output_past_the_call_bound_is_dropped_and_counted() {
        let mut state = state(100);
        let mut wasi = DenyAll(&mut state);
        let stream = stdout::Host::get_stdout(&mut wasi).unwrap();
        let before = dropped_output_bytes();
        let chunk = OUTPUT_BYTES_PER_CALL as u64 - 10;
        streams::HostOutputStream::write_zeroes(
            &mut wasi,
            Resource::new_borrow(stream.rep()),
            chunk,
        )
        .unwrap()
        .unwrap();
        // Crossing the bound is not an error for the guest: the bytes are dropped.
        streams::HostOutputStream::write_zeroes(&mut wasi, Resource::new_borrow(stream.rep()), 100)
            .unwrap()
            .unwrap();
        assert!(dropped_output_bytes() - before >= 90);
        // The WIT's own bound on one blocking write still traps.
        assert!(streams::HostOutputStream::blocking_write_and_flush(
            &mut wasi,
            Resource::new_borrow(stream.rep()),
            vec![0; 4097]
        )
        .is_err());
    }
}
