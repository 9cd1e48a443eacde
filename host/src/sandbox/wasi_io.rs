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

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::{poll as async_poll, streams as async_streams};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::bindings::sync::sockets::udp_create_socket;
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, DynPollable, SocketError, SocketResult, StreamError,
    StreamResult, UdpSocket,
};
use wasmtime_wasi::WasiView;

use super::state::{HostState, SandboxTrap};

/// How many times an operation is polled before it counts as waiting. Two would do for
/// everything the deny-all context offers (a zero-length sleep yields once, by design, to
/// let tokio's I/O driver run); the margin costs nothing when operations are ready.
const POLLS_BEFORE_TRAP: usize = 4;

/// Replaces wasmtime-wasi's blocking `wasi:io` and UDP-socket bindings in `linker` with
/// ones that never wait. Call after `wasmtime_wasi::p2::add_to_linker_sync`.
pub(crate) fn shadow_blocking_bindings(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = (|| {
        streams::add_to_linker::<HostState, NeverWait>(linker, |state| {
            Immediate(state.ctx().table)
        })?;
        poll::add_to_linker::<HostState, NeverWait>(linker, |state| Immediate(state.ctx().table))?;
        udp_create_socket::add_to_linker::<HostState, NeverWait>(linker, |state| {
            Immediate(state.ctx().table)
        })
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

/// The store's resource table, seen through bindings that never wait.
pub(crate) struct Immediate<'a>(&'a mut ResourceTable);

impl streams::Host for Immediate<'_> {
    fn convert_stream_error(
        &mut self,
        error: StreamError,
    ) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.0, error)
    }
}

impl streams::HostOutputStream for Immediate<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        without_waiting(
            "closing an output stream",
            async_streams::HostOutputStream::drop(self.0, stream),
        )?
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.0, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.0, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        stream_without_waiting(
            "writing to an output stream",
            async_streams::HostOutputStream::blocking_write_and_flush(self.0, stream, bytes),
        )
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        stream_without_waiting(
            "writing to an output stream",
            async_streams::HostOutputStream::blocking_write_zeroes_and_flush(self.0, stream, len),
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.0, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.0, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.0, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        stream_without_waiting(
            "flushing an output stream",
            async_streams::HostOutputStream::blocking_flush(self.0, stream),
        )
    }

    fn splice(
        &mut self,
        destination: Resource<DynOutputStream>,
        source: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.0, destination, source, len)
    }

    fn blocking_splice(
        &mut self,
        destination: Resource<DynOutputStream>,
        source: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        stream_without_waiting(
            "splicing streams",
            async_streams::HostOutputStream::blocking_splice(self.0, destination, source, len),
        )
    }
}

impl streams::HostInputStream for Immediate<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        without_waiting(
            "closing an input stream",
            async_streams::HostInputStream::drop(self.0, stream),
        )?
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.0, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        stream_without_waiting(
            "reading an input stream",
            async_streams::HostInputStream::blocking_read(self.0, stream, len),
        )
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.0, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        stream_without_waiting(
            "reading an input stream",
            async_streams::HostInputStream::blocking_skip(self.0, stream, len),
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.0, stream)
    }
}

impl poll::Host for Immediate<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        without_waiting(
            "polling (a sleep or blocking I/O)",
            async_poll::Host::poll(self.0, pollables),
        )?
    }
}

impl poll::HostPollable for Immediate<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        without_waiting(
            "checking a pollable",
            async_poll::HostPollable::ready(self.0, pollable),
        )?
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        without_waiting(
            "waiting on a pollable (a sleep or blocking I/O)",
            async_poll::HostPollable::block(self.0, pollable),
        )?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.0, pollable)
    }
}

impl udp_create_socket::Host for Immediate<'_> {
    /// The deny-all context allows no UDP; wasmtime-wasi would only find that out inside
    /// `block_on`.
    fn create_udp_socket(
        &mut self,
        _address_family: IpAddressFamily,
    ) -> SocketResult<Resource<UdpSocket>> {
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
        let error = self.0.get(&error)?;
        Ok(error.downcast_ref::<std::io::Error>().map(ErrorCode::from))
    }
}

impl network::HostNetwork for Immediate<'_> {
    fn drop(&mut self, network: Resource<network::Network>) -> wasmtime::Result<()> {
        self.0.delete(network)?;
        Ok(())
    }
}
