"""{{name}}: a Palisade authorizer. It answers for every request of the application it is
installed in: permit, deny (with a reason for operators and audit) or not-applicable."""

import wit_world
from wit_world.imports import types

READS = (types.Operation.RETRIEVE, types.Operation.DISCOVERY)


class WitWorld(wit_world.WitWorld):
    def authorize(self, request: types.Request) -> types.Decision:
        # Replace with your policy. The request time is the only clock a plugin has;
        # wit_world.imports.config.get() gives the operator's configuration as JSON (SER-014).
        if request.operation in READS:
            return types.Decision_Permit()
        return types.Decision_Deny(f"{request.operation.name.lower()} is not allowed by {{name}}")
