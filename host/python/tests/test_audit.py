"""Audit before answer (SER-016) from Python: every decision is in the signed audit log,
under the id the decision carries, before `decide` returns it, and `palisade audit verify`
(the real binary) accepts the log."""

import gc
import json
import os
import pathlib
import subprocess

import pytest

import palisade

SPEC = """
name = "meters"
[[plugin]]
plugin = "acp"
[plugin.config]
policies = [{ id = "p", pv = { acr = [{ acor = ["CAE1"], acop = 2 }] } }]
"""

REPO = pathlib.Path(__file__).resolve().parents[3]


def palisade_bin():
    """`PALISADE_BIN`, else target/debug/palisade; a skip (a failure under CI) without it."""
    path = pathlib.Path(os.environ.get("PALISADE_BIN", REPO / "target/debug/palisade"))
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is not built and CI is set (cargo build --bin palisade)")
        pytest.skip(f"{path} is not built (cargo build --bin palisade)")
    return path


def decisions(log_dir):
    entries = [json.loads(line) for line in (log_dir / "audit.log").read_text().splitlines()]
    return [entry["payload"] for entry in entries if entry["kind"] == "decision"]


def decide(runtime, originator, operation):
    return runtime.decide(
        {
            "app": "meters",
            "originator": originator,
            "operation": operation,
            "target": "/cse-in/meters/m1",
            "request_time": 1718000000,
        }
    )


def test_decisions_are_in_the_signed_log_before_they_are_returned(tmp_path):
    log_dir, keys = tmp_path / "audit", tmp_path / "keys"
    runtime = palisade.Runtime()
    runtime.install(SPEC)
    assert decide(runtime, "CAE1", "retrieve").decision_id is None, "no log, no record"
    runtime.set_audit_log(log_dir, keys)

    seen = []
    for originator, operation, effect in [
        ("CAE1", "retrieve", "permit"),
        ("CAE1", "delete", "deny"),
        ("CAE9", "retrieve", "deny"),
    ]:
        decision = decide(runtime, originator, operation)
        assert decision.effect == effect, decision.reason
        assert len(decision.decision_id) == 32
        assert decision.to_dict()["decision_id"] == decision.decision_id
        record = decisions(log_dir)[-1]
        assert record["decision_id"] == decision.decision_id
        assert record["effect"] == effect
        assert record["originator"] == originator
        assert record["operation"] == operation
        assert record["app"] == "meters"
        assert record["request_time"] == 1718000000
        assert record["module"]["name"] == "acp"
        seen.append(decision.decision_id)
    assert len(set(seen)) == 3

    with pytest.raises(palisade.AuditLogError, match="cannot be replaced"):
        runtime.set_audit_log(tmp_path / "other", keys)
    assert not (tmp_path / "other").exists()

    # A second runtime cannot write the same log (its chain would fork).
    other = palisade.Runtime()
    with pytest.raises(palisade.AuditLogError, match="cannot open the audit log"):
        other.set_audit_log(log_dir, keys)

    # Dropping the runtime closes the log with a signed checkpoint.
    del runtime
    gc.collect()
    verified = subprocess.run(
        [palisade_bin(), "audit", "verify", "--log", log_dir, "--key", log_dir / "gateway.pub"],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert [record["decision_id"] for record in decisions(log_dir)] == seen


def test_bad_audit_arguments_are_refused(tmp_path):
    runtime = palisade.Runtime()
    with pytest.raises(TypeError, match="on_failure"):
        runtime.set_audit_log(tmp_path / "audit", tmp_path / "keys", on_failure="ignore")
    (tmp_path / "file").write_text("")
    with pytest.raises(palisade.AuditLogError, match="audit keystore"):
        runtime.set_audit_log(tmp_path / "audit", tmp_path / "file")
    runtime.set_audit_log(tmp_path / "audit", tmp_path / "keys", on_failure="answer-unrecorded")
