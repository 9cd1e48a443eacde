"""Business hours, in Python: the same policy as examples/business-hours/rust and
examples/business-hours/js, so that the three can be compared (BENCHMARKS.md).

Reads (retrieve, discovery) are always allowed; anything else only between the configured
hours, UTC, of the request time (the only clock a plugin has). The configuration is
`{"opens": 8, "closes": 18}` (those are the defaults); a configuration that does not make
sense denies every request it would have to decide (fail-closed).

Build (componentize-py 0.25.1, which .ci/run installs), then test it warm and fresh:

    componentize-py -d ../../../plugins/sdk/wit -w authorizer componentize app -o business_hours.wasm
    palisade test --isolation warm cases.toml
    palisade test --isolation fresh-per-request cases.toml
"""

import json

import wit_world
from wit_world.imports import config, types

READS = (types.Operation.RETRIEVE, types.Operation.DISCOVERY)

# Parsed on first use, not at import: componentize-py runs the module's top level while it
# builds the component, where no configuration exists yet.
_hours = None


def _parse_hours(text):
    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError("the configuration is not a JSON object")
    opens = document.get("opens", 8)
    closes = document.get("closes", 18)
    for name, value in (("opens", opens), ("closes", closes)):
        if type(value) is not int or not 0 <= value <= 24:
            raise ValueError(f"{name} must be an hour from 0 to 24")
    if opens >= closes:
        raise ValueError("opens must be before closes")
    return opens, closes


def hours():
    """The opening hours, or a ValueError naming what is wrong with the configuration."""
    global _hours
    if _hours is None:
        try:
            _hours = _parse_hours(config.get())
        except ValueError as error:
            _hours = error
    if isinstance(_hours, ValueError):
        raise _hours
    return _hours


class WitWorld(wit_world.WitWorld):
    def authorize(self, request: types.Request) -> types.Decision:
        if request.operation in READS:
            return types.Decision_Permit()
        try:
            opens, closes = hours()
        except ValueError as error:
            return types.Decision_Deny(f"invalid plugin configuration: {error}")
        hour = (request.request_time // 3600) % 24
        if opens <= hour < closes:
            return types.Decision_Permit()
        return types.Decision_Deny(f"{request.operation.name.lower()} outside business hours")
