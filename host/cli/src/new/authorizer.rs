//! {{name}}: a Palisade authorizer. It answers for every request of the application it is
//! installed in: permit, deny (with a reason for operators and audit) or not-applicable.

use palisade_sdk::{Authorizer, Decision, Request};

struct Plugin;

impl Authorizer for Plugin {
    fn authorize(request: Request) -> Decision {
        // Replace with your policy. The request time is the only clock a plugin has;
        // palisade_sdk::config gives the operator's configuration (SER-014).
        if request.operation.is_read() {
            Decision::Permit
        } else {
            Decision::Deny(format!(
                "{} is not allowed by {{name}}",
                request.operation.name()
            ))
        }
    }
}

palisade_sdk::export_authorizer!(Plugin);
