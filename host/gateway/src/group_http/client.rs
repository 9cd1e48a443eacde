//! The gateway's HTTP client for the server role, over `http://` or `https://`
//! ([`crate::tls_client`], the one client TLS builder: the server verified against a
//! configured CA, an optional client certificate). Every protocol message is signed end to
//! end (and independent-mode keys never cross the wire), so TLS adds confidentiality of the
//! group membership traffic (SER-002/003), not authenticity.

use super::{HttpError, CONTENT_TYPE};
use axum::http::{header, Method, Request, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade_group::ChallengeRequest;
use palisade_group::{
    GroupAnswers, GroupAssertion, GroupAssociation, GroupChallenge, GroupConfirmations,
};
use palisade_group::{GroupSigner, Mode};
use palisade_group::{WireMessage, MAX_MESSAGE_LEN};
use std::sync::Arc;
use std::time::Duration;

/// How long one call to the server may take, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest JSON error body read from the server.
const MAX_ERROR_BODY: usize = 16 << 10;

/// Calls the server role's endpoints as one gateway.
#[derive(Clone)]
pub struct ServerClient {
    base: String,
    gateway: String,
    signer: Arc<dyn GroupSigner>,
    client: Client<crate::tls_client::Connector, Full<Bytes>>,
}

impl ServerClient {
    /// A client for the server at `base_url` (`http://host:port`, optionally with a path
    /// prefix), signing challenge requests as `gateway` with its identity key.
    pub fn new(
        base_url: &str,
        gateway: &str,
        signer: Arc<dyn GroupSigner>,
    ) -> Result<Self, HttpError> {
        Self::with_tls(base_url, gateway, signer, None)
    }

    /// Like [`ServerClient::new`], for an `https://` server too: `tls` from
    /// [`crate::tls_client::client_config`]. An `https://` URL without `tls` and `tls` with
    /// an `http://` URL are refused (no silent plain text, no ignored CA).
    pub fn with_tls(
        base_url: &str,
        gateway: &str,
        signer: Arc<dyn GroupSigner>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, HttpError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|e| HttpError::InvalidRequest(format!("server URL {base_url:?}: {e}")))?;
        let https = crate::tls_client::is_https(&uri)
            .map_err(|e| HttpError::InvalidRequest(format!("server URL: {e}")))?;
        if uri.authority().is_none() {
            return Err(HttpError::InvalidRequest(format!(
                "server URL {base_url:?}: expected http(s)://HOST:PORT"
            )));
        }
        match (https, tls.is_some()) {
            (true, false) => {
                return Err(HttpError::InvalidRequest(format!(
                    "server URL {base_url:?} is https://: give the server's CA file"
                )))
            }
            (false, true) => {
                return Err(HttpError::InvalidRequest(format!(
                    "server URL {base_url:?} is plain http://: TLS files apply to https:// only"
                )))
            }
            (false, false) => {
                tracing::warn!(server = %base, "the group-authentication server is reached over plain http://")
            }
            (true, true) => {}
        }
        palisade_group::check_id(gateway)?;
        let connector = crate::tls_client::Connector::new(Duration::from_secs(10), tls);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(ServerClient {
            base,
            gateway: gateway.to_owned(),
            signer,
            client,
        })
    }

    /// Asks for a group challenge with a freshly signed request.
    pub async fn challenge(
        &self,
        group: &str,
        mode: Mode,
        now: u64,
    ) -> Result<GroupChallenge, HttpError> {
        let req = ChallengeRequest::signed(&*self.signer, &self.gateway, group, mode, now)?;
        self.challenge_raw(req.to_bytes()).await
    }

    /// Sends an already encoded challenge request (tests replay one with this).
    pub async fn challenge_raw(&self, body: Vec<u8>) -> Result<GroupChallenge, HttpError> {
        let b = self.post("/group/v1/challenge", body).await?;
        decode(&b)
    }

    /// SER-027: sends the signed assertion, returns the association.
    pub async fn represented(&self, a: &GroupAssertion) -> Result<GroupAssociation, HttpError> {
        let b = self.post("/group/v1/represented", a.to_bytes()).await?;
        decode(&b)
    }

    /// SER-028: sends all answers in one message, returns the confirmations.
    pub async fn independent(&self, m: &GroupAnswers) -> Result<GroupConfirmations, HttpError> {
        let b = self.post("/group/v1/independent", m.to_bytes()).await?;
        decode(&b)
    }

    /// #16.6: relays a sealed message's bytes to the server and returns the sealed answer's
    /// bytes, both unread (the agent holds no key of an independent-mode association).
    pub async fn sealed(&self, body: Vec<u8>) -> Result<Bytes, HttpError> {
        self.post("/group/v1/sealed", body).await
    }

    /// One POST. A refusal by the server keeps its status and code (the caller's request was
    /// refused for that reason); anything else wrong with the exchange is `server-unavailable`.
    ///
    /// A kept-alive connection that the server closes (its idle or header timeout) just as
    /// a request goes out fails that request before any answer: it is sent once more, on a
    /// new connection. Nothing else is retried. Should the server have acted on the first
    /// copy after all, the second is a replay it refuses (answers and assertions are bound
    /// to one challenge, sealed messages to their channel's counter; a second challenge
    /// request only opens another challenge): the retry can fail a round, never count a
    /// message twice.
    async fn post(&self, path: &str, body: Vec<u8>) -> Result<Bytes, HttpError> {
        let unavailable = |e: &dyn std::fmt::Display| HttpError::ServerUnavailable(e.to_string());
        let body = Bytes::from(body);
        let request = || {
            Request::builder()
                .method(Method::POST)
                .uri(format!("{}{path}", self.base))
                .header(header::CONTENT_TYPE, CONTENT_TYPE)
                .body(Full::new(body.clone()))
                .map_err(|e| unavailable(&e))
        };
        let exchange = async {
            let resp = match self.client.request(request()?).await {
                Err(error) if closed_before_answer(&error) => {
                    tracing::debug!(%error, path, "the group server closed the connection before answering; sending once more");
                    self.client.request(request()?).await
                }
                other => other,
            }
            .map_err(|e| unavailable(&palisade_types::Chain(&e)))?;
            let status = resp.status();
            let limit = if status.is_success() {
                MAX_MESSAGE_LEN
            } else {
                MAX_ERROR_BODY
            };
            let bytes = Limited::new(resp.into_body(), limit)
                .collect()
                .await
                .map_err(|e| unavailable(&*e))?
                .to_bytes();
            Ok::<_, HttpError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| unavailable(&"no answer in time"))??;
        if status.is_success() {
            return Ok(bytes);
        }
        Err(refusal(status, &bytes))
    }
}

/// Whether the connection closed before any answer came (a kept-alive connection the server
/// closed as the request went out: a FIN, or a reset when the request's bytes were already
/// in the server's buffer as it closed).
fn closed_before_answer(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_canceled() || hyper.is_closed() {
                return true;
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
            return matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe);
        }
        source = cause.source();
    }
    false
}

fn decode<M: WireMessage>(b: &[u8]) -> Result<M, HttpError> {
    M::from_bytes(b).map_err(|e| HttpError::ServerUnavailable(format!("bad answer: {e}")))
}

/// The server's JSON error, kept as is when it is a refusal of the request (4xx); a server
/// failure (5xx) stays a failure of the server.
fn refusal(status: StatusCode, body: &[u8]) -> HttpError {
    let parsed: Option<(String, String)> = serde_json::from_slice::<crate::error::ErrorBody>(body)
        .ok()
        .map(|body| (body.error.code, body.error.message));
    match parsed {
        Some((code, message)) if status.is_client_error() => HttpError::Failed {
            status,
            code,
            message: format!("the group server refused: {message}"),
        },
        Some((code, message)) => {
            HttpError::ServerUnavailable(format!("server error {status} {code}: {message}"))
        }
        None => HttpError::ServerUnavailable(format!("server answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads one whole request (headers and a `Content-Length` body) from `stream`.
    async fn read_request(stream: &mut tokio::net::TcpStream) {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed before sending its request");
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if seen.len() >= end + 4 + length {
                    return;
                }
            }
        }
    }

    /// How the loopback server ends a connection it does not answer.
    #[derive(Clone, Copy)]
    enum Unanswered {
        /// A plain close (FIN): the server's idle timeout.
        Close,
        /// A reset (RST), as when the server closes with the request unread in its buffer.
        Reset,
    }

    /// A loopback server that reads each connection's request and then, for the first
    /// `unanswered` connections, ends it as `how` says without a word; later ones get
    /// `200 answer`.
    async fn server(unanswered: usize, how: Unanswered) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let index = counted.fetch_add(1, Ordering::SeqCst);
                read_request(&mut stream).await;
                if index >= unanswered {
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nanswer";
                    stream.write_all(answer).await.unwrap();
                } else if let Unanswered::Reset = how {
                    stream.set_zero_linger().unwrap();
                }
            }
        });
        (url, connections)
    }

    fn client(url: &str) -> ServerClient {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        ServerClient::new(url, "gw-1", Arc::new(key)).unwrap()
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_retried_once_on_a_new_one() {
        let (url, connections) = server(1, Unanswered::Close).await;
        let answer = client(&url).sealed(b"sealed".to_vec()).await.unwrap();
        assert_eq!(&answer[..], b"answer");
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_reset_before_the_answer_is_retried_once_too() {
        let (url, connections) = server(1, Unanswered::Reset).await;
        let answer = client(&url).sealed(b"sealed".to_vec()).await.unwrap();
        assert_eq!(&answer[..], b"answer");
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_second_close_is_the_server_unavailable() {
        let (url, connections) = server(usize::MAX, Unanswered::Close).await;
        let Err(HttpError::ServerUnavailable(message)) =
            client(&url).sealed(b"sealed".to_vec()).await
        else {
            panic!("a server that never answers is unavailable")
        };
        assert!(message.contains("SendRequest"), "{message}");
        assert_eq!(connections.load(Ordering::SeqCst), 2, "one retry, no more");
    }
}
