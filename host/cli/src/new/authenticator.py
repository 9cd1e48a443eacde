"""{{name}}: a Palisade authenticator. It turns the credential presented with a request into
an identity, rejects it, or leaves it to another authenticator (not-applicable)."""

import wit_world
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def authenticate(self, request: types.Request, credential: types.Credential) -> types.AuthResult:
        # Replace with your check: verify a token with wit_world.imports.crypto (keys stay in
        # the host, SER-010), look the key up in the configuration, ...
        if credential.scheme != "demo":
            return types.AuthResult_NotApplicable()
        if credential.value == "let-me-in":
            return types.AuthResult_Authenticated(
                types.Identity(subject=request.originator, roles=["user"], expires_at=None)
            )
        return types.AuthResult_Rejected("unknown demo key")
