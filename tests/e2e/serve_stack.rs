//! The one HTTP server stack (`palisade_gateway::server::serve_connections`): the
//! group-authentication server (`palisade group server`, an axum router) refuses an
//! oversized request head and cuts off a slow client as `palisade serve` does
//! (serve_ops::oversize_and_slow_bodies_and_slow_headers_are_cut_off), with the gateway's
//! default limits (16 KiB head, 5 s for the headers).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `palisade group server` on a loopback port, killed when dropped.
struct GroupServer {
    child: Child,
    addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl Drop for GroupServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn group_server() -> GroupServer {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let init = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["group", "init", "--data", dir])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let registry = serde_json::json!({
        "server_id": "srv-1", "devices": {}, "groups": {}, "gateways": {},
    });
    std::fs::write(
        data.path().join("group-registry.json"),
        registry.to_string(),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["group", "server", "--listen", "127.0.0.1:0", "--data", dir])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the listening line");
    let hello: serde_json::Value = serde_json::from_str(&line).expect(&line);
    let addr = hello["listening"].as_str().unwrap().parse().unwrap();
    GroupServer {
        child,
        addr,
        _data: data,
    }
}

/// Sends `request` and reads until the server closes; `None` if it kept the connection
/// open for 30 seconds (six times the header timeout).
fn exchange(addr: SocketAddr, request: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
            Some(String::from_utf8_lossy(&answer).into_owned())
        }
        Err(_) => None,
    }
}

#[test]
fn the_group_server_has_the_limits_of_serve() {
    let server = group_server();

    // A request head over 16 KiB: 431 before any handler runs.
    let mut request = b"POST /group/v1/challenge HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 20 << 10));
    request.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    let answer = exchange(server.addr, &request).expect("the connection is closed");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // Slow-loris: headers that never end are cut off after the header timeout (axum::serve
    // kept such a connection open for as long as the client liked).
    let answer = exchange(
        server.addr,
        b"POST /group/v1/challenge HTTP/1.1\r\nHost: x\r\nX-Slow: 1",
    )
    .expect("a slow client is cut off");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );

    // Meanwhile a well-formed request is answered (by the router: an empty challenge body
    // is a malformed message, not a closed connection).
    let answer = exchange(
        server.addr,
        b"POST /group/v1/challenge HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    )
    .expect("answered");
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer:?}");
}
