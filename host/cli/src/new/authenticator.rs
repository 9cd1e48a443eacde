//! {{name}}: a Palisade authenticator. It turns the credential presented with a request into
//! an identity, rejects it, or leaves it to another authenticator (not-applicable).

use palisade_sdk::{AuthResult, Authenticator, Credential, Identity, Request};

struct Plugin;

impl Authenticator for Plugin {
    fn authenticate(request: Request, credential: Credential) -> AuthResult {
        // Replace with your check: verify a token with palisade_sdk::crypto (keys stay in the
        // host, SER-010), look the key up in the configuration, ...
        if credential.scheme != "demo" {
            return AuthResult::NotApplicable;
        }
        if credential.value == "let-me-in" {
            AuthResult::Authenticated(Identity {
                subject: request.originator,
                roles: vec!["user".into()],
                expires_at: None,
            })
        } else {
            AuthResult::Rejected("unknown demo key".into())
        }
    }
}

palisade_sdk::export_authenticator!(Plugin);
