//! The parts of WASI that grant nothing: the filesystem (nothing preopened), sockets and
//! name look-ups (refused with `access-denied`), terminals (none), and I/O errors (the
//! sandbox's streams never fail). Their resources are uninhabited types: the host never
//! creates one, so no guest can hold a handle to one, and wasmtime refuses any handle that
//! is not in the guest's table before a method is reached. The methods of those resources
//! are therefore unreachable; they trap all the same (`never`) rather than trust that.

/// An I/O error: the sandbox's streams never fail, so there is none.
pub enum IoError {}
/// A terminal: no stream is one.
pub enum TerminalInput {}
/// A terminal: no stream is one.
pub enum TerminalOutput {}
/// A filesystem descriptor: nothing is preopened, and every other descriptor is opened
/// through one.
pub enum Descriptor {}
/// A directory listing, read through a descriptor.
pub enum DirectoryEntryStream {}
/// A TCP socket: creating one is refused.
pub enum TcpSocket {}
/// A UDP socket: creating one is refused.
pub enum UdpSocket {}
/// Datagrams of a UDP socket.
pub enum IncomingDatagramStream {}
/// Datagrams of a UDP socket.
pub enum OutgoingDatagramStream {}
/// Results of a name look-up: every look-up is refused.
pub enum ResolveAddressStream {}

/// The answer of a method of a resource the host never creates.
fn never<T>() -> wasmtime::Result<T> {
    Err(wasmtime::format_err!(
        "a WASI resource the sandbox never hands out was used"
    ))
}

mod io_error {
    use wasmtime::component::Resource;

    use super::super::generated::wasi::io::error::*;
    use super::super::DenyAll;
    use super::never;

    impl Host for DenyAll<'_> {}

    impl HostError for DenyAll<'_> {
        fn to_debug_string(&mut self, _: Resource<Error>) -> wasmtime::Result<String> {
            never()
        }

        fn drop(&mut self, _: Resource<Error>) -> wasmtime::Result<()> {
            never()
        }
    }
}

mod cli_terminal_input {
    use wasmtime::component::Resource;

    use super::super::generated::wasi::cli::terminal_input::*;
    use super::super::DenyAll;
    use super::never;

    impl Host for DenyAll<'_> {}

    impl HostTerminalInput for DenyAll<'_> {
        fn drop(&mut self, _: Resource<TerminalInput>) -> wasmtime::Result<()> {
            never()
        }
    }
}

mod cli_terminal_output {
    use wasmtime::component::Resource;

    use super::super::generated::wasi::cli::terminal_output::*;
    use super::super::DenyAll;
    use super::never;

    impl Host for DenyAll<'_> {}

    impl HostTerminalOutput for DenyAll<'_> {
        fn drop(&mut self, _: Resource<TerminalOutput>) -> wasmtime::Result<()> {
            never()
        }
    }
}

mod filesystem_types {
    use wasmtime::component::Resource;

    use super::super::generated::wasi::filesystem::types::*;
    use super::super::DenyAll;
    use super::never;

    impl Host for DenyAll<'_> {
        fn filesystem_error_code(
            &mut self,
            _: Resource<Error>,
        ) -> wasmtime::Result<Option<ErrorCode>> {
            never()
        }
    }

    impl HostDescriptor for DenyAll<'_> {
        fn read_via_stream(
            &mut self,
            _: Resource<Descriptor>,
            _: u64,
        ) -> wasmtime::Result<Result<Resource<InputStream>, ErrorCode>> {
            never()
        }

        fn write_via_stream(
            &mut self,
            _: Resource<Descriptor>,
            _: u64,
        ) -> wasmtime::Result<Result<Resource<OutputStream>, ErrorCode>> {
            never()
        }

        fn append_via_stream(
            &mut self,
            _: Resource<Descriptor>,
        ) -> wasmtime::Result<Result<Resource<OutputStream>, ErrorCode>> {
            never()
        }

        fn advise(
            &mut self,
            _: Resource<Descriptor>,
            _: u64,
            _: u64,
            _: Advice,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn sync_data(
            &mut self,
            _: Resource<Descriptor>,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn get_flags(
            &mut self,
            _: Resource<Descriptor>,
        ) -> wasmtime::Result<Result<DescriptorFlags, ErrorCode>> {
            never()
        }

        fn get_type(
            &mut self,
            _: Resource<Descriptor>,
        ) -> wasmtime::Result<Result<DescriptorType, ErrorCode>> {
            never()
        }

        fn set_size(
            &mut self,
            _: Resource<Descriptor>,
            _: u64,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn set_times(
            &mut self,
            _: Resource<Descriptor>,
            _: NewTimestamp,
            _: NewTimestamp,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn read(
            &mut self,
            _: Resource<Descriptor>,
            _: u64,
            _: u64,
        ) -> wasmtime::Result<Result<(Vec<u8>, bool), ErrorCode>> {
            never()
        }

        fn write(
            &mut self,
            _: Resource<Descriptor>,
            _: Vec<u8>,
            _: u64,
        ) -> wasmtime::Result<Result<u64, ErrorCode>> {
            never()
        }

        fn read_directory(
            &mut self,
            _: Resource<Descriptor>,
        ) -> wasmtime::Result<Result<Resource<DirectoryEntryStream>, ErrorCode>> {
            never()
        }

        fn sync(&mut self, _: Resource<Descriptor>) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn create_directory_at(
            &mut self,
            _: Resource<Descriptor>,
            _: String,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn stat(
            &mut self,
            _: Resource<Descriptor>,
        ) -> wasmtime::Result<Result<DescriptorStat, ErrorCode>> {
            never()
        }

        fn stat_at(
            &mut self,
            _: Resource<Descriptor>,
            _: PathFlags,
            _: String,
        ) -> wasmtime::Result<Result<DescriptorStat, ErrorCode>> {
            never()
        }

        fn set_times_at(
            &mut self,
            _: Resource<Descriptor>,
            _: PathFlags,
            _: String,
            _: NewTimestamp,
            _: NewTimestamp,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn link_at(
            &mut self,
            _: Resource<Descriptor>,
            _: PathFlags,
            _: String,
            _: Resource<Descriptor>,
            _: String,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn open_at(
            &mut self,
            _: Resource<Descriptor>,
            _: PathFlags,
            _: String,
            _: OpenFlags,
            _: DescriptorFlags,
        ) -> wasmtime::Result<Result<Resource<Descriptor>, ErrorCode>> {
            never()
        }

        fn readlink_at(
            &mut self,
            _: Resource<Descriptor>,
            _: String,
        ) -> wasmtime::Result<Result<String, ErrorCode>> {
            never()
        }

        fn remove_directory_at(
            &mut self,
            _: Resource<Descriptor>,
            _: String,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn rename_at(
            &mut self,
            _: Resource<Descriptor>,
            _: String,
            _: Resource<Descriptor>,
            _: String,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn symlink_at(
            &mut self,
            _: Resource<Descriptor>,
            _: String,
            _: String,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn unlink_file_at(
            &mut self,
            _: Resource<Descriptor>,
            _: String,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn is_same_object(
            &mut self,
            _: Resource<Descriptor>,
            _: Resource<Descriptor>,
        ) -> wasmtime::Result<bool> {
            never()
        }

        fn metadata_hash(
            &mut self,
            _: Resource<Descriptor>,
        ) -> wasmtime::Result<Result<MetadataHashValue, ErrorCode>> {
            never()
        }

        fn metadata_hash_at(
            &mut self,
            _: Resource<Descriptor>,
            _: PathFlags,
            _: String,
        ) -> wasmtime::Result<Result<MetadataHashValue, ErrorCode>> {
            never()
        }

        fn drop(&mut self, _: Resource<Descriptor>) -> wasmtime::Result<()> {
            never()
        }
    }

    impl HostDirectoryEntryStream for DenyAll<'_> {
        fn read_directory_entry(
            &mut self,
            _: Resource<DirectoryEntryStream>,
        ) -> wasmtime::Result<Result<Option<DirectoryEntry>, ErrorCode>> {
            never()
        }

        fn drop(&mut self, _: Resource<DirectoryEntryStream>) -> wasmtime::Result<()> {
            never()
        }
    }
}

mod filesystem_preopens {
    use wasmtime::component::Resource;

    use super::super::generated::wasi::filesystem::preopens::*;
    use super::super::DenyAll;

    impl Host for DenyAll<'_> {
        /// Nothing is preopened: no path leads anywhere, and no descriptor can ever exist.
        fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
            self.charge()?;
            Ok(Vec::new())
        }
    }
}

mod sockets_network {
    use wasmtime::component::Resource;

    use super::super::generated::wasi::sockets::network::*;
    use super::super::DenyAll;
    use super::never;

    impl Host for DenyAll<'_> {
        fn network_error_code(
            &mut self,
            _: Resource<Error>,
        ) -> wasmtime::Result<Option<ErrorCode>> {
            never()
        }
    }

    impl HostNetwork for DenyAll<'_> {
        fn drop(&mut self, network: Resource<Network>) -> wasmtime::Result<()> {
            self.charge()?;
            self.table().delete(network)?;
            Ok(())
        }
    }
}

mod sockets_instance_network {
    use wasmtime::component::Resource;

    use super::super::generated::wasi::sockets::instance_network::*;
    use super::super::DenyAll;

    impl Host for DenyAll<'_> {
        /// A handle that leads nowhere: every socket and name look-up through it is refused.
        fn instance_network(&mut self) -> wasmtime::Result<Resource<Network>> {
            self.charge()?;
            self.push(super::super::Network)
        }
    }
}

mod sockets_udp {
    use wasmtime::component::Resource;

    use super::super::generated::wasi::sockets::udp::*;
    use super::super::DenyAll;
    use super::never;

    impl Host for DenyAll<'_> {}

    impl HostUdpSocket for DenyAll<'_> {
        fn start_bind(
            &mut self,
            _: Resource<UdpSocket>,
            _: Resource<Network>,
            _: IpSocketAddress,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn finish_bind(
            &mut self,
            _: Resource<UdpSocket>,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn stream(
            &mut self,
            _: Resource<UdpSocket>,
            _: Option<IpSocketAddress>,
        ) -> wasmtime::Result<
            Result<
                (
                    Resource<IncomingDatagramStream>,
                    Resource<OutgoingDatagramStream>,
                ),
                ErrorCode,
            >,
        > {
            never()
        }

        fn local_address(
            &mut self,
            _: Resource<UdpSocket>,
        ) -> wasmtime::Result<Result<IpSocketAddress, ErrorCode>> {
            never()
        }

        fn remote_address(
            &mut self,
            _: Resource<UdpSocket>,
        ) -> wasmtime::Result<Result<IpSocketAddress, ErrorCode>> {
            never()
        }

        fn address_family(&mut self, _: Resource<UdpSocket>) -> wasmtime::Result<IpAddressFamily> {
            never()
        }

        fn unicast_hop_limit(
            &mut self,
            _: Resource<UdpSocket>,
        ) -> wasmtime::Result<Result<u8, ErrorCode>> {
            never()
        }

        fn set_unicast_hop_limit(
            &mut self,
            _: Resource<UdpSocket>,
            _: u8,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn receive_buffer_size(
            &mut self,
            _: Resource<UdpSocket>,
        ) -> wasmtime::Result<Result<u64, ErrorCode>> {
            never()
        }

        fn set_receive_buffer_size(
            &mut self,
            _: Resource<UdpSocket>,
            _: u64,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn send_buffer_size(
            &mut self,
            _: Resource<UdpSocket>,
        ) -> wasmtime::Result<Result<u64, ErrorCode>> {
            never()
        }

        fn set_send_buffer_size(
            &mut self,
            _: Resource<UdpSocket>,
            _: u64,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn subscribe(&mut self, _: Resource<UdpSocket>) -> wasmtime::Result<Resource<Pollable>> {
            never()
        }

        fn drop(&mut self, _: Resource<UdpSocket>) -> wasmtime::Result<()> {
            never()
        }
    }

    impl HostIncomingDatagramStream for DenyAll<'_> {
        fn receive(
            &mut self,
            _: Resource<IncomingDatagramStream>,
            _: u64,
        ) -> wasmtime::Result<Result<Vec<IncomingDatagram>, ErrorCode>> {
            never()
        }

        fn subscribe(
            &mut self,
            _: Resource<IncomingDatagramStream>,
        ) -> wasmtime::Result<Resource<Pollable>> {
            never()
        }

        fn drop(&mut self, _: Resource<IncomingDatagramStream>) -> wasmtime::Result<()> {
            never()
        }
    }

    impl HostOutgoingDatagramStream for DenyAll<'_> {
        fn check_send(
            &mut self,
            _: Resource<OutgoingDatagramStream>,
        ) -> wasmtime::Result<Result<u64, ErrorCode>> {
            never()
        }

        fn send(
            &mut self,
            _: Resource<OutgoingDatagramStream>,
            _: Vec<OutgoingDatagram>,
        ) -> wasmtime::Result<Result<u64, ErrorCode>> {
            never()
        }

        fn subscribe(
            &mut self,
            _: Resource<OutgoingDatagramStream>,
        ) -> wasmtime::Result<Resource<Pollable>> {
            never()
        }

        fn drop(&mut self, _: Resource<OutgoingDatagramStream>) -> wasmtime::Result<()> {
            never()
        }
    }
}

mod sockets_udp_create_socket {
    use wasmtime::component::Resource;

    use super::super::generated::wasi::sockets::udp_create_socket::*;
    use super::super::DenyAll;

    impl Host for DenyAll<'_> {
        fn create_udp_socket(
            &mut self,
            _address_family: IpAddressFamily,
        ) -> wasmtime::Result<Result<Resource<UdpSocket>, ErrorCode>> {
            self.charge()?;
            Ok(Err(ErrorCode::AccessDenied))
        }
    }
}

mod sockets_tcp {
    use wasmtime::component::Resource;

    use super::super::generated::wasi::sockets::tcp::*;
    use super::super::DenyAll;
    use super::never;

    impl Host for DenyAll<'_> {}

    impl HostTcpSocket for DenyAll<'_> {
        fn start_bind(
            &mut self,
            _: Resource<TcpSocket>,
            _: Resource<Network>,
            _: IpSocketAddress,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn finish_bind(
            &mut self,
            _: Resource<TcpSocket>,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn start_connect(
            &mut self,
            _: Resource<TcpSocket>,
            _: Resource<Network>,
            _: IpSocketAddress,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn finish_connect(
            &mut self,
            _: Resource<TcpSocket>,
        ) -> wasmtime::Result<Result<(Resource<InputStream>, Resource<OutputStream>), ErrorCode>>
        {
            never()
        }

        fn start_listen(
            &mut self,
            _: Resource<TcpSocket>,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn finish_listen(
            &mut self,
            _: Resource<TcpSocket>,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn accept(
            &mut self,
            _: Resource<TcpSocket>,
        ) -> wasmtime::Result<
            Result<
                (
                    Resource<TcpSocket>,
                    Resource<InputStream>,
                    Resource<OutputStream>,
                ),
                ErrorCode,
            >,
        > {
            never()
        }

        fn local_address(
            &mut self,
            _: Resource<TcpSocket>,
        ) -> wasmtime::Result<Result<IpSocketAddress, ErrorCode>> {
            never()
        }

        fn remote_address(
            &mut self,
            _: Resource<TcpSocket>,
        ) -> wasmtime::Result<Result<IpSocketAddress, ErrorCode>> {
            never()
        }

        fn is_listening(&mut self, _: Resource<TcpSocket>) -> wasmtime::Result<bool> {
            never()
        }

        fn address_family(&mut self, _: Resource<TcpSocket>) -> wasmtime::Result<IpAddressFamily> {
            never()
        }

        fn set_listen_backlog_size(
            &mut self,
            _: Resource<TcpSocket>,
            _: u64,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn keep_alive_enabled(
            &mut self,
            _: Resource<TcpSocket>,
        ) -> wasmtime::Result<Result<bool, ErrorCode>> {
            never()
        }

        fn set_keep_alive_enabled(
            &mut self,
            _: Resource<TcpSocket>,
            _: bool,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn keep_alive_idle_time(
            &mut self,
            _: Resource<TcpSocket>,
        ) -> wasmtime::Result<Result<u64, ErrorCode>> {
            never()
        }

        fn set_keep_alive_idle_time(
            &mut self,
            _: Resource<TcpSocket>,
            _: u64,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn keep_alive_interval(
            &mut self,
            _: Resource<TcpSocket>,
        ) -> wasmtime::Result<Result<u64, ErrorCode>> {
            never()
        }

        fn set_keep_alive_interval(
            &mut self,
            _: Resource<TcpSocket>,
            _: u64,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn keep_alive_count(
            &mut self,
            _: Resource<TcpSocket>,
        ) -> wasmtime::Result<Result<u32, ErrorCode>> {
            never()
        }

        fn set_keep_alive_count(
            &mut self,
            _: Resource<TcpSocket>,
            _: u32,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn hop_limit(&mut self, _: Resource<TcpSocket>) -> wasmtime::Result<Result<u8, ErrorCode>> {
            never()
        }

        fn set_hop_limit(
            &mut self,
            _: Resource<TcpSocket>,
            _: u8,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn receive_buffer_size(
            &mut self,
            _: Resource<TcpSocket>,
        ) -> wasmtime::Result<Result<u64, ErrorCode>> {
            never()
        }

        fn set_receive_buffer_size(
            &mut self,
            _: Resource<TcpSocket>,
            _: u64,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn send_buffer_size(
            &mut self,
            _: Resource<TcpSocket>,
        ) -> wasmtime::Result<Result<u64, ErrorCode>> {
            never()
        }

        fn set_send_buffer_size(
            &mut self,
            _: Resource<TcpSocket>,
            _: u64,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn subscribe(&mut self, _: Resource<TcpSocket>) -> wasmtime::Result<Resource<Pollable>> {
            never()
        }

        fn shutdown(
            &mut self,
            _: Resource<TcpSocket>,
            _: ShutdownType,
        ) -> wasmtime::Result<Result<(), ErrorCode>> {
            never()
        }

        fn drop(&mut self, _: Resource<TcpSocket>) -> wasmtime::Result<()> {
            never()
        }
    }
}

mod sockets_tcp_create_socket {
    use wasmtime::component::Resource;

    use super::super::generated::wasi::sockets::tcp_create_socket::*;
    use super::super::DenyAll;

    impl Host for DenyAll<'_> {
        fn create_tcp_socket(
            &mut self,
            _address_family: IpAddressFamily,
        ) -> wasmtime::Result<Result<Resource<TcpSocket>, ErrorCode>> {
            self.charge()?;
            Ok(Err(ErrorCode::AccessDenied))
        }
    }
}

mod sockets_ip_name_lookup {
    use wasmtime::component::Resource;

    use super::super::generated::wasi::sockets::ip_name_lookup::*;
    use super::super::DenyAll;
    use super::never;

    impl Host for DenyAll<'_> {
        fn resolve_addresses(
            &mut self,
            network: Resource<Network>,
            _name: String,
        ) -> wasmtime::Result<Result<Resource<ResolveAddressStream>, ErrorCode>> {
            self.charge()?;
            self.table().get(&network)?;
            Ok(Err(ErrorCode::AccessDenied))
        }
    }

    impl HostResolveAddressStream for DenyAll<'_> {
        fn resolve_next_address(
            &mut self,
            _: Resource<ResolveAddressStream>,
        ) -> wasmtime::Result<Result<Option<IpAddress>, ErrorCode>> {
            never()
        }

        fn subscribe(
            &mut self,
            _: Resource<ResolveAddressStream>,
        ) -> wasmtime::Result<Resource<Pollable>> {
            never()
        }

        fn drop(&mut self, _: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
            never()
        }
    }
}
