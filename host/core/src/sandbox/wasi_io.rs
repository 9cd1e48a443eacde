//! WASI streams and polling that never wait (SER-001, SER-024).
//!
//! wasmtime-wasi's synchronous bindings run every potentially blocking WASI call (writing
//! to stderr, dropping a stream, polling, sleeping) through `block_on` on the ambient tokio
//! runtime. For a sandbox that grants nothing that is both too much and unsound:
//!
//! - On a tokio worker thread, `block_on` panics. Decisions would have to leave the worker
//!   (`block_in_place`, several context switches per request) just in case a plugin writes
//!   to stderr, which every panicking Rust plugin does.
//! - A plugin that sleeps (`std::thread::sleep`, a monotonic-clock subscription) would block
//!   its host thread in a host call, where the epoch deadline cannot interrupt it: one
//!   plugin could hold a gateway thread for as long as it asked.
//!
//! In the deny-all context (see `state.rs`) every stream is a sink, an empty stdin or closed,
//! so everything a plugin can legitimately wait for is ready at once. These bindings shadow
//! wasmtime-wasi's for `wasi:io/streams`, `wasi:io/poll` and `wasi:sockets/udp-create-socket`
//! (the only other interface that blocks before checking its permission). They poll the
//! same operations a few times without blocking; what is still not ready then could only
//! become ready by waiting, and the call traps with [`SandboxTrap::WouldBlock`] instead, so
//! the plugin fails (and its decision denies) within its time limit.
//!
//! They are also where WASI calls meet the sandbox's budgets (SER-001): every call here
//! spends one unit of the host-call budget (the other WASI bindings are charged in
//! `HostState::ctx`), `wasi:random` is bounded per request and per call, stdout and stderr
//! bytes are counted per call (past the bound they are dropped and counted in a metric), and
//! a call that would take the instance past its resource-handle cap traps naming that cap.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use wasmtime::component::{HasData, Linker, Resource, ResourceTableError};
use wasmtime_wasi::cli::WasiCliCtxView;
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::p2::bindings::cli::{stderr, stdin, stdout};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::bindings::io::{poll as async_poll, streams as async_streams};
use wasmtime_wasi::p2::bindings::random::{insecure, insecure_seed, random};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::bindings::sync::sockets::udp_create_socket;
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, DynPollable, SocketError, SocketResult, StreamError,
    StreamResult, UdpSocket,
};

use super::state::{HostState, SandboxTrap, RANDOM_BYTES_PER_CALL, RANDOM_BYTES_PER_REQUEST};

/// How many times an operation is polled before it counts as waiting. Two would do for
/// everything the deny-all context offers (a zero-length sleep yields once, by design, to
/// let tokio's I/O driver run); the margin costs nothing when operations are ready.
const POLLS_BEFORE_TRAP: usize = 4;

/// stdout and stderr bytes dropped past [`super::state::OUTPUT_BYTES_PER_CALL`], by every
/// plugin of the process since it started.
static DROPPED_OUTPUT_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes of stdout and stderr plugins wrote past their per-call bound, dropped (for the
/// `palisade_plugin_output_dropped_bytes_total` metric).
pub fn dropped_output_bytes() -> u64 {
    DROPPED_OUTPUT_BYTES.load(Ordering::Relaxed)
}

/// Replaces wasmtime-wasi's blocking `wasi:io` and UDP-socket bindings in `linker` with
/// ones that never wait, and its `wasi:random` and stdio bindings with budgeted ones. Call
/// after `wasmtime_wasi::p2::add_to_linker_sync`.
pub(crate) fn shadow_blocking_bindings(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = (|| {
        streams::add_to_linker::<HostState, NeverWait>(linker, immediate)?;
        poll::add_to_linker::<HostState, NeverWait>(linker, immediate)?;
        udp_create_socket::add_to_linker::<HostState, NeverWait>(linker, immediate)?;
        random::add_to_linker::<HostState, NeverWait>(linker, immediate)?;
        insecure::add_to_linker::<HostState, NeverWait>(linker, immediate)?;
        insecure_seed::add_to_linker::<HostState, NeverWait>(linker, immediate)?;
        stdin::add_to_linker::<HostState, NeverWait>(linker, immediate)?;
        stdout::add_to_linker::<HostState, NeverWait>(linker, immediate)?;
        stderr::add_to_linker::<HostState, NeverWait>(linker, immediate)?;
        monotonic_clock::add_to_linker::<HostState, NeverWait>(linker, immediate)
    })();
    linker.allow_shadowing(false);
    result
}

/// Runs `operation` to completion if it completes without waiting, or traps.
///
/// The ambient tokio runtime is entered (not blocked on) so that timer-backed pollables can
/// register themselves, on worker threads and plain threads alike.
fn without_waiting<F: Future>(what: &'static str, operation: F) -> wasmtime::Result<F::Output> {
    wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
        poll_ready(operation, POLLS_BEFORE_TRAP)
            .ok_or_else(|| wasmtime::Error::new(SandboxTrap::WouldBlock(what)))
    })
}

/// Polls `future` up to `polls` times with a waker that does nothing, and gives its output if
/// it completed: for futures that never need to wait, no executor is needed.
pub(super) fn poll_ready<F: Future>(future: F, polls: usize) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    (0..polls).find_map(|_| match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    })
}

/// The same as [`without_waiting`] for operations that answer a stream result.
fn stream_without_waiting<T>(
    what: &'static str,
    operation: impl Future<Output = StreamResult<T>>,
) -> StreamResult<T> {
    without_waiting(what, operation).unwrap_or_else(|trap| Err(StreamError::Trap(trap)))
}

/// The binding set of this module.
struct NeverWait;

impl HasData for NeverWait {
    type Data<'a> = Immediate<'a>;
}

/// The getter every binding of this module is linked with.
fn immediate(state: &mut HostState) -> Immediate<'_> {
    Immediate(state)
}

/// A plugin's store data, seen through bindings that never wait and spend its budgets.
pub(crate) struct Immediate<'a>(&'a mut HostState);

impl Immediate<'_> {
    /// Spends one unit of the host-call budget.
    fn charge(&mut self) -> wasmtime::Result<()> {
        self.0.spend_host_call()
    }

    /// The same, for operations that answer a stream result.
    fn charge_stream(&mut self) -> StreamResult<()> {
        self.charge().map_err(StreamError::Trap)
    }

    /// Names the resource-handle cap when a full table is why `error` happened.
    fn name_handle_cap(&self, error: wasmtime::Error) -> wasmtime::Error {
        match error.downcast_ref::<ResourceTableError>() {
            Some(ResourceTableError::Full) => wasmtime::Error::new(SandboxTrap::ResourceHandles {
                limit: self.0.limits.resource_handles,
            }),
            _ => error,
        }
    }

    /// Takes `len` bytes from the call's random-byte budget, or traps.
    fn take_random(&mut self, len: u64) -> wasmtime::Result<()> {
        let left = self.0.random_left;
        match usize::try_from(len) {
            Ok(len) if len <= RANDOM_BYTES_PER_REQUEST && len <= left => {
                self.0.random_left = left - len;
                Ok(())
            }
            _ => Err(wasmtime::Error::new(SandboxTrap::RandomBudget {
                requested: len,
                left,
                per_request: RANDOM_BYTES_PER_REQUEST,
                per_call: RANDOM_BYTES_PER_CALL,
            })),
        }
    }

    /// Counts `len` bytes written to an output stream (in the deny-all context, stdout or
    /// stderr, both sinks) against the call's bound. Whether they should reach the sink:
    /// the bytes of a write that crosses the bound are dropped, and the part past the bound
    /// is counted as dropped.
    fn admit_output(&mut self, len: u64) -> bool {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let left = self.0.output_left;
        if len <= left {
            self.0.output_left = left - len;
            return true;
        }
        self.0.output_left = 0;
        let dropped = u64::try_from(len - left).unwrap_or(u64::MAX);
        DROPPED_OUTPUT_BYTES.fetch_add(dropped, Ordering::Relaxed);
        false
    }

    /// Checks that `stream` is a live output stream, for writes that are dropped without
    /// reaching it (a bad handle must still trap).
    fn check_output(&mut self, stream: &Resource<DynOutputStream>) -> StreamResult<()> {
        self.0
            .table
            .get(stream)
            .map(|_| ())
            .map_err(|error| StreamError::Trap(error.into()))
    }

    fn clocks(&mut self) -> WasiClocksCtxView<'_> {
        WasiClocksCtxView {
            ctx: self.0.wasi.clocks(),
            table: &mut self.0.table,
        }
    }

    fn cli(&mut self) -> WasiCliCtxView<'_> {
        WasiCliCtxView {
            ctx: self.0.wasi.cli(),
            table: &mut self.0.table,
        }
    }
}

impl streams::Host for Immediate<'_> {
    fn convert_stream_error(
        &mut self,
        error: StreamError,
    ) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(&mut self.0.table, error)
    }
}

impl streams::HostOutputStream for Immediate<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        self.charge()?;
        without_waiting(
            "closing an output stream",
            async_streams::HostOutputStream::drop(&mut self.0.table, stream),
        )?
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        self.charge_stream()?;
        streams::HostOutputStream::check_write(&mut self.0.table, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        self.charge_stream()?;
        if !self.admit_output(bytes.len() as u64) {
            return self.check_output(&stream);
        }
        streams::HostOutputStream::write(&mut self.0.table, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        self.charge_stream()?;
        if !self.admit_output(bytes.len() as u64) {
            return self.check_output(&stream);
        }
        stream_without_waiting(
            "writing to an output stream",
            async_streams::HostOutputStream::blocking_write_and_flush(
                &mut self.0.table,
                stream,
                bytes,
            ),
        )
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        self.charge_stream()?;
        if !self.admit_output(len) {
            return self.check_output(&stream);
        }
        stream_without_waiting(
            "writing to an output stream",
            async_streams::HostOutputStream::blocking_write_zeroes_and_flush(
                &mut self.0.table,
                stream,
                len,
            ),
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.charge()?;
        streams::HostOutputStream::subscribe(&mut self.0.table, stream)
            .map_err(|error| self.name_handle_cap(error))
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        self.charge_stream()?;
        if !self.admit_output(len) {
            return self.check_output(&stream);
        }
        streams::HostOutputStream::write_zeroes(&mut self.0.table, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        self.charge_stream()?;
        streams::HostOutputStream::flush(&mut self.0.table, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        self.charge_stream()?;
        stream_without_waiting(
            "flushing an output stream",
            async_streams::HostOutputStream::blocking_flush(&mut self.0.table, stream),
        )
    }

    /// The only input stream is stdin, which is closed: nothing is spliced, and nothing to
    /// count.
    fn splice(
        &mut self,
        destination: Resource<DynOutputStream>,
        source: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        self.charge_stream()?;
        streams::HostOutputStream::splice(&mut self.0.table, destination, source, len)
    }

    fn blocking_splice(
        &mut self,
        destination: Resource<DynOutputStream>,
        source: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        self.charge_stream()?;
        stream_without_waiting(
            "splicing streams",
            async_streams::HostOutputStream::blocking_splice(
                &mut self.0.table,
                destination,
                source,
                len,
            ),
        )
    }
}

impl streams::HostInputStream for Immediate<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        self.charge()?;
        without_waiting(
            "closing an input stream",
            async_streams::HostInputStream::drop(&mut self.0.table, stream),
        )?
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        self.charge_stream()?;
        streams::HostInputStream::read(&mut self.0.table, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        self.charge_stream()?;
        stream_without_waiting(
            "reading an input stream",
            async_streams::HostInputStream::blocking_read(&mut self.0.table, stream, len),
        )
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        self.charge_stream()?;
        streams::HostInputStream::skip(&mut self.0.table, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        self.charge_stream()?;
        stream_without_waiting(
            "reading an input stream",
            async_streams::HostInputStream::blocking_skip(&mut self.0.table, stream, len),
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.charge()?;
        streams::HostInputStream::subscribe(&mut self.0.table, stream)
            .map_err(|error| self.name_handle_cap(error))
    }
}

impl poll::Host for Immediate<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        self.charge()?;
        without_waiting(
            "polling (a sleep or blocking I/O)",
            async_poll::Host::poll(&mut self.0.table, pollables),
        )?
    }
}

impl poll::HostPollable for Immediate<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        self.charge()?;
        without_waiting(
            "checking a pollable",
            async_poll::HostPollable::ready(&mut self.0.table, pollable),
        )?
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.charge()?;
        without_waiting(
            "waiting on a pollable (a sleep or blocking I/O)",
            async_poll::HostPollable::block(&mut self.0.table, pollable),
        )?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.charge()?;
        async_poll::HostPollable::drop(&mut self.0.table, pollable)
    }
}

impl udp_create_socket::Host for Immediate<'_> {
    /// The deny-all context allows no UDP; wasmtime-wasi would only find that out inside
    /// `block_on`.
    fn create_udp_socket(
        &mut self,
        _address_family: IpAddressFamily,
    ) -> SocketResult<Resource<UdpSocket>> {
        self.charge().map_err(SocketError::trap)?;
        Err(SocketError::from(ErrorCode::AccessDenied))
    }
}

/// Required by the `udp-create-socket` bindings; behaves as wasmtime-wasi's own.
impl network::Host for Immediate<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        error.downcast()
    }

    fn network_error_code(
        &mut self,
        error: Resource<wasmtime_wasi::p2::bindings::io::error::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        self.charge()?;
        let error = self.0.table.get(&error)?;
        Ok(error.downcast_ref::<std::io::Error>().map(ErrorCode::from))
    }
}

impl network::HostNetwork for Immediate<'_> {
    fn drop(&mut self, network: Resource<network::Network>) -> wasmtime::Result<()> {
        self.charge()?;
        self.0.table.delete(network)?;
        Ok(())
    }
}

/// `wasi:random`, bounded: the host makes the bytes before the plugin sees them, in a host
/// call the epoch deadline cannot interrupt, so each request is small and each call's total
/// is bounded (64 MiB in one request took half a second and 64 MiB of host memory).
impl random::Host for Immediate<'_> {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.charge()?;
        self.take_random(len)?;
        random::Host::get_random_bytes(self.0.wasi.random(), len)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        self.charge()?;
        self.take_random(8)?;
        random::Host::get_random_u64(self.0.wasi.random())
    }
}

impl insecure::Host for Immediate<'_> {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.charge()?;
        self.take_random(len)?;
        insecure::Host::get_insecure_random_bytes(self.0.wasi.random(), len)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        self.charge()?;
        self.take_random(8)?;
        insecure::Host::get_insecure_random_u64(self.0.wasi.random())
    }
}

impl insecure_seed::Host for Immediate<'_> {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        self.charge()?;
        insecure_seed::Host::insecure_seed(self.0.wasi.random())
    }
}

/// The standard streams: each `get-*` makes a new handle, which a leaking plugin keeps.
impl stdin::Host for Immediate<'_> {
    fn get_stdin(&mut self) -> wasmtime::Result<Resource<DynInputStream>> {
        self.charge()?;
        let stream = stdin::Host::get_stdin(&mut self.cli());
        stream.map_err(|error| self.name_handle_cap(error))
    }
}

impl stdout::Host for Immediate<'_> {
    fn get_stdout(&mut self) -> wasmtime::Result<Resource<DynOutputStream>> {
        self.charge()?;
        let stream = stdout::Host::get_stdout(&mut self.cli());
        stream.map_err(|error| self.name_handle_cap(error))
    }
}

impl stderr::Host for Immediate<'_> {
    fn get_stderr(&mut self) -> wasmtime::Result<Resource<DynOutputStream>> {
        self.charge()?;
        let stream = stderr::Host::get_stderr(&mut self.cli());
        stream.map_err(|error| self.name_handle_cap(error))
    }
}

/// The (frozen) monotonic clock: each subscription makes a new pollable, which a leaking
/// plugin keeps.
impl monotonic_clock::Host for Immediate<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        self.charge()?;
        monotonic_clock::Host::now(&mut self.clocks())
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        self.charge()?;
        monotonic_clock::Host::resolution(&mut self.clocks())
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.charge()?;
        let pollable = monotonic_clock::Host::subscribe_instant(&mut self.clocks(), when);
        pollable.map_err(|error| self.name_handle_cap(error))
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.charge()?;
        let pollable = monotonic_clock::Host::subscribe_duration(&mut self.clocks(), duration);
        pollable.map_err(|error| self.name_handle_cap(error))
    }
}
