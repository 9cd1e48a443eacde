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
            # The request's strings arrive as one UTF-8 text cut at byte offsets (`ends`);
            # the first piece is the originator.
            originator = request.text.encode()[: request.ends[0]].decode()
            return types.AuthResult_Authenticated(
                types.Identity(subject=originator, roles=["user"], expires_at=None)
            )
        return types.AuthResult_Rejected("unknown demo key")
