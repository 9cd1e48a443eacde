"""{{name}}: a Palisade filter. It sees each response on its way back to the originator and
passes it on unchanged, rewrites its body, or blocks it (e.g. location privacy, SER-026)."""

import wit_world
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def filter(self, request: types.Request, response: types.Response) -> types.FilterResult:
        # Replace with your rule: this one redacts the word "secret".
        if b"secret" not in response.body:
            return types.FilterResult_Unchanged()
        return types.FilterResult_Rewrite(response.body.replace(b"secret", b"[redacted]"))
