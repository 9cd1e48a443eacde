//! Verifying a gateway's chain from the collector's database (`audit verify --collector`).
//!
//! The stored lines are fetched page by page (`GET /v1/gateways/{id}/chain`) and each page is
//! checked as the continuation of the one before with the gateway's own verifier, against
//! the key the auditor trusts (given on the command line, not taken from the collector), so
//! a collector whose database was edited is caught like an edited file.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use palisade_audit::{verify_continuation, ChainPoint, VerifyReport};
use palisade_tls::{client_config, ClientTlsFiles};

/// The largest chain page read (the collector sends at most 10000 lines of at most ~20 KiB).
const MAX_PAGE: usize = 256 << 20;

/// The result of verifying a stored chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RemoteReport {
    /// The log id.
    pub log_id: String,
    /// Entries verified (a gap entry counts once).
    pub entries: u64,
    /// The last seq covered.
    pub last_seq: u64,
    /// Checkpoints whose signatures verified.
    pub checkpoints: u64,
    /// The seq of the last signed checkpoint.
    pub last_checkpoint_seq: Option<u64>,
    /// Decisions dropped into signed gaps.
    pub dropped: u64,
}

/// Why a stored chain could not be verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The client TLS files cannot be used.
    #[error(transparent)]
    Tls(#[from] palisade_tls::ClientTlsError),
    /// The gateway id is not one (1 to 253 of A-Z a-z 0-9 - . _).
    #[error("{0:?} is not a gateway id")]
    BadGateway(String),
    /// The collector could not be reached or its answer read.
    #[error("{uri}: {message}")]
    Transport {
        /// The request.
        uri: String,
        /// What failed.
        message: String,
    },
    /// The collector refused.
    #[error("{uri}: {status}: {body}")]
    Refused {
        /// The request.
        uri: String,
        /// Its HTTP status.
        status: u16,
        /// Its answer.
        body: String,
    },
    /// The collector holds nothing of this gateway.
    #[error("the collector holds no entries of gateway {0:?}")]
    Nothing(String),
    /// The stored chain does not verify (the error names the line of the page and the seq).
    #[error("gateway {gateway:?}: the stored chain does not verify from seq {from}")]
    Chain {
        /// The gateway.
        gateway: String,
        /// The first seq of the page that failed.
        from: u64,
        /// Why.
        #[source]
        source: palisade_audit::VerifyError,
    },
}

/// Fetches and verifies `gateway`'s stored chain; `Err` on a chain that does not verify
/// (the error names the seq) or on a transport failure.
pub async fn verify_stored(
    collector: &hyper::Uri,
    gateway: &str,
    key: &[u8; 32],
    tls: ClientTlsFiles,
) -> Result<RemoteReport, RemoteError> {
    let valid = !gateway.is_empty()
        && gateway.len() <= crate::config::MAX_ID_BYTES
        && gateway
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !valid {
        return Err(RemoteError::BadGateway(gateway.to_owned()));
    }
    let client = palisade_tls::http_client::<Empty<Bytes>>(
        palisade_tls::DEFAULT_CONNECT_TIMEOUT,
        Some(client_config(&tls)?),
    );
    let base = collector.to_string();
    let base = base.trim_end_matches('/');
    let mut point: Option<ChainPoint> = None;
    let mut total = RemoteReport {
        log_id: String::new(),
        entries: 0,
        last_seq: 0,
        checkpoints: 0,
        last_checkpoint_seq: None,
        dropped: 0,
    };
    loop {
        let from = point.as_ref().map_or(0, |p| p.next_seq);
        let uri = format!("{base}/v1/gateways/{gateway}/chain?from_seq={from}");
        let transport = |message: String| RemoteError::Transport {
            uri: uri.clone(),
            message,
        };
        let parsed = uri
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| transport(e.to_string()))?;
        let response = client
            .get(parsed)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_PAGE)
            .collect()
            .await
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(RemoteError::Refused {
                uri,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        if body.is_empty() {
            if point.is_none() {
                return Err(RemoteError::Nothing(gateway.to_owned()));
            }
            return Ok(total);
        }
        let report: VerifyReport =
            verify_continuation(&body, key, point.as_ref()).map_err(|source| {
                RemoteError::Chain {
                    gateway: gateway.to_owned(),
                    from,
                    source,
                }
            })?;
        total.log_id = report.log_id.clone();
        total.entries += report.entries;
        total.last_seq = report.last_seq;
        total.checkpoints += report.checkpoints;
        total.dropped += report.dropped;
        if let Some(cp) = &report.last_checkpoint {
            total.last_checkpoint_seq = Some(cp.seq);
        }
        let mut head = [0u8; 32];
        // The verifier writes the head as 64 hex digits.
        let _ = hex::decode_to_slice(&report.head_hash, &mut head);
        point = Some(ChainPoint {
            log_id: report.log_id,
            next_seq: report.last_seq + 1,
            head,
        });
    }
}
