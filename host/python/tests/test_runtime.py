"""The Python package against the real runtime: real reference plugins, real decisions."""

import json
import threading

import pytest

import palisade

POLICY = {
    "policies": [
        {
            "id": "lights-acp",
            "pv": {
                "acr": [
                    {"acor": ["CAE-admin"], "acop": 63},
                    {"acor": ["<operators>"], "acop": 2},
                ]
            },
        }
    ]
}

SPEC = {
    "name": "lights",
    "groups": {"operators": ["CAE-night-shift"]},
    "plugin": [
        {
            "plugin": "acp",
            "kind": "authorizer",
            "capabilities": ["groups"],
            "config": POLICY,
        }
    ],
}

TOML_SPEC = """
name = "meters"
[[plugin]]
plugin = "acp"
[plugin.config]
policies = [{ id = "p", pv = { acr = [{ acor = ["CAE1"], acop = 2 }] } }]
"""


def request(originator, operation, app="lights", **extra):
    return {
        "app": app,
        "originator": originator,
        "operation": operation,
        "target": f"/cse-in/{app}/lamp1",
        **extra,
    }


@pytest.fixture
def runtime():
    runtime = palisade.Runtime()
    assert runtime.install(SPEC) == "lights"
    return runtime


def test_permit_and_deny_with_reasons(runtime):
    permitted = runtime.decide(request("CAE-night-shift", "retrieve"))
    assert isinstance(permitted, palisade.Decision)
    assert permitted.permitted is True
    assert permitted.effect == "permit"
    assert permitted.reason == "permitted by acp"
    assert permitted.decided_by == "acp"
    assert permitted.app == "lights"
    assert permitted.enforced is True
    assert permitted.would_deny is None
    assert permitted.identity is None
    assert [stage["outcome"] for stage in permitted.stages] == ["permit"]
    assert set(permitted.timings) == {"authenticate_us", "authorize_us", "total_us"}

    denied = runtime.decide(request("CAE-night-shift", "delete"))
    assert denied.permitted is False
    assert denied.effect == "deny"
    assert "delete" in denied.reason and "CAE-night-shift" in denied.reason
    as_dict = denied.to_dict()
    assert as_dict["effect"] == "deny"
    assert as_dict["decided_by"]["kind"] == "authorizer"
    assert len(as_dict["decided_by"]["sha256"]) == 64
    assert "deny" in repr(denied)


def test_toml_and_json_specs_and_json_requests():
    runtime = palisade.Runtime()
    assert runtime.install(TOML_SPEC) == "meters"
    json_spec = json.dumps({**SPEC, "name": "lamps"})
    assert runtime.install(json_spec, format="json") == "lamps"
    assert runtime.apps == ["lamps", "meters"]
    decision = runtime.decide(json.dumps(request("CAE1", "retrieve", app="meters")))
    assert decision.permitted


def test_spec_files_resolve_paths_against_their_folder(tmp_path):
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    spec = tmp_path / "lights.toml"
    spec.write_text(
        'name = "lights"\n[groups]\noperators = ["CAE-night-shift"]\n'
        '[[plugin]]\nplugin = "acp"\ncapabilities = ["groups"]\nconfig_file = "policy.json"\n'
    )
    runtime = palisade.Runtime()
    assert runtime.install_file(spec) == "lights"
    assert runtime.decide(request("CAE-night-shift", "retrieve")).permitted
    with pytest.raises(palisade.SpecError, match=r"spec: cannot read .*missing\.toml"):
        runtime.install_file(tmp_path / "missing.toml")


def test_monitor_mode_permits_and_reports(runtime):
    runtime.install({**SPEC, "name": "trial", "mode": "monitor"})
    decision = runtime.decide(request("CAE-stranger", "delete", app="trial"))
    assert decision.permitted
    assert decision.enforced is False
    assert "CAE-stranger" in decision.would_deny


def test_unknown_app_is_denied_not_an_error(runtime):
    decision = runtime.decide(request("CAE1", "retrieve", app="nothing"))
    assert not decision.permitted
    assert decision.reason == 'unknown application "nothing"'
    assert decision.decided_by is None


def test_double_install_is_refused_and_remove_frees_the_name(runtime):
    with pytest.raises(palisade.AlreadyInstalledError, match='application "lights" is installed already'):
        runtime.install(SPEC)
    runtime.remove("lights")
    assert not runtime.decide(request("CAE-night-shift", "retrieve")).permitted
    with pytest.raises(palisade.NotInstalledError, match='no application "lights" is installed'):
        runtime.remove("lights")
    runtime.install(SPEC)
    assert runtime.decide(request("CAE-night-shift", "retrieve")).permitted


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ({"name": "a"}, palisade.SpecError, "has no plugin"),
        ({"name": "a", "plugin": [{"plugin": "acp", "capabilities": ["teleport"]}]},
         palisade.SpecError, r"plugin\[0\]\.capabilities\[0\]: unknown variant `teleport`"),
        ({"name": "a", "paths": ["/x"], "plugin": [{"plugin": "acp"}]},
         palisade.SpecError, "unknown field `paths`.*a gateway key"),
        ({"name": "../a", "plugin": [{"plugin": "acp"}]}, palisade.SpecError, "name: application name"),
        ({"name": "f", "plugin": [{"plugin": "geo-privacy"}]}, palisade.SpecError, "has no authorizer"),
        ({"name": "a", "plugin": [{"plugin": "nowhere.wasm"}]}, palisade.SpecError, r"plugin\[0\]\.plugin: cannot read"),
        ({"name": "a", "plugin": [{"plugin": "acp", "config": {"policies": 3}}]},
         palisade.InstallError, 'plugin "acp" of application "a"'),
        ({"name": "a", "limits": {"deadline_ms": 0}, "plugin": [{"plugin": "acp"}]},
         palisade.SpecError, "deadline_ms = 0"),
    ],
)
def test_bad_specs_raise_naming_the_problem(spec, error, message):
    runtime = palisade.Runtime()
    with pytest.raises(error, match=message):
        runtime.install(spec)
    assert runtime.apps == []


def test_toml_errors_name_the_line():
    with pytest.raises(palisade.SpecError, match=r"line 3: plugin\[0\]\.kind: unknown variant `judge`"):
        palisade.Runtime().install('name = "a"\n[[plugin]]\nkind = "judge"\nplugin = "acp"\n')


@pytest.mark.parametrize(
    "bad, message",
    [
        (request("CAE1", "fly"), "unknown variant `fly`"),
        ({"app": "lights", "operation": "retrieve", "target": "/x"}, "missing field `originator`"),
        (request("", "retrieve"), "originator is empty"),
        (request("CAE1", "retrieve", admin=True), "unknown field `admin`"),
        ("[1, 2]", "expected a JSON object"),
        (request("CAE1", "retrieve", attributes=[["k", "v" * (70 << 10)]]), "more than the 65536 accepted"),
    ],
)
def test_bad_requests_raise_naming_the_problem(runtime, bad, message):
    with pytest.raises(palisade.RequestError, match=message):
        runtime.decide(bad)


def test_wrong_types_raise_type_errors(runtime):
    with pytest.raises(TypeError, match="request must be a str or a dict, not int"):
        runtime.decide(3)
    with pytest.raises(TypeError, match='format must be "toml" or "json"'):
        runtime.install(TOML_SPEC, format="yaml")


def test_exceptions_share_one_base():
    for name in ["SettingsError", "SpecError", "AlreadyInstalledError", "InstallError",
                 "NotInstalledError", "RequestError", "EngineError"]:
        assert issubclass(getattr(palisade, name), palisade.PalisadeError)
    assert issubclass(palisade.PalisadeError, Exception)


def test_engine_settings_are_checked():
    with pytest.raises(palisade.SettingsError, match="below one WebAssembly page"):
        palisade.Runtime({"max_memory_bytes": 1024})
    with pytest.raises(palisade.SettingsError, match="unknown field `pool`"):
        palisade.Runtime("pool = 3")
    small = palisade.Runtime({"max_memory_bytes": 8 << 20})
    with pytest.raises(palisade.SpecError, match="above the engine's ceiling of 8388608"):
        small.install(SPEC)
    small.install({**SPEC, "limits": {"memory_bytes": 4 << 20}})


def test_one_runtime_on_many_threads(runtime):
    failures = []

    def worker(index):
        for round in range(20):
            originator = "CAE-night-shift" if (index + round) % 2 == 0 else "CAE-stranger"
            decision = runtime.decide(request(originator, "retrieve"))
            if decision.permitted != (originator == "CAE-night-shift"):
                failures.append((originator, decision.reason))

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    runtime.install({**SPEC, "name": "during"})
    for thread in threads:
        thread.join()
    assert failures == []
    assert runtime.apps == ["during", "lights"]
