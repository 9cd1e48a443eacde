use palisade_sdk::{Authorizer, Decision, Request};
struct P;
impl Authorizer for P {
    fn authorize(request: Request) -> Decision {
        if request.operation.is_read() { Decision::Permit } else { Decision::deny("ro") }
    }
}
palisade_sdk::export_authorizer!(P);
