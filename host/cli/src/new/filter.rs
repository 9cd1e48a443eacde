//! {{name}}: a Palisade filter. It sees each response on its way back to the originator and
//! passes it on unchanged, rewrites its body, or blocks it (e.g. location privacy, SER-026).

use palisade_sdk::{Filter, FilterResult, Request, Response};

struct Plugin;

const SECRET: &[u8] = b"secret";
const REDACTED: &[u8] = b"[redacted]";

impl Filter for Plugin {
    fn filter(_request: Request, response: Response) -> FilterResult {
        // Replace with your rule: this one redacts the word "secret".
        let body = response.body;
        if !body.windows(SECRET.len()).any(|window| window == SECRET) {
            return FilterResult::Unchanged;
        }
        let mut out = Vec::with_capacity(body.len());
        let mut rest = body.as_slice();
        while !rest.is_empty() {
            if rest.starts_with(SECRET) {
                out.extend_from_slice(REDACTED);
                rest = &rest[SECRET.len()..];
            } else {
                out.push(rest[0]);
                rest = &rest[1..];
            }
        }
        FilterResult::Rewrite(out)
    }
}

palisade_sdk::export_filter!(Plugin);
