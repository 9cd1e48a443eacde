"""The independent Python device side and gateway relay against the real
`palisade group server` on 127.0.0.1, in both modes (SER-027, SER-028)."""

import json
import os
import pathlib
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

import palisade_group as pg

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("PALISADE_BIN", str(ROOT / "target/debug/palisade"))
GROUP = "grp-py"


def read_line(proc, timeout=60):
    out = []
    t = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not out or not out[0]:
        raise RuntimeError("the server printed no listening line")
    return json.loads(out[0])


def start(tmp_path_factory, *server_args):
    if not os.path.exists(BIN):
        pytest.fail(f"{BIN} not built (cargo build first, or set PALISADE_BIN)")
    data = tmp_path_factory.mktemp("server")
    out = subprocess.run(
        [BIN, "group", "init", "--data", str(data), "--out", str(data / "server.pub")],
        check=True, capture_output=True, text=True,
    )
    server_public = bytes.fromhex(out.stdout.strip())
    gateway_seed, outsider_seed = os.urandom(32), os.urandom(32)
    gateway_public = pg.Ed25519PrivateKey.from_private_bytes(gateway_seed).public_key().public_bytes_raw()
    outsider_public = pg.Ed25519PrivateKey.from_private_bytes(outsider_seed).public_key().public_bytes_raw()
    devices, registered, seeds = [], {}, {}
    for i in range(5):
        seed = os.urandom(32)
        dev = pg.Device(f"py-{i}", seed, server_public, {"gw-py": gateway_public})
        seeds[dev.id] = seed
        # py-4 is forged: registered with one key, answering with another.
        registered[dev.id] = (dev.public if i != 4 else pg.Ed25519PrivateKey.from_private_bytes(os.urandom(32)).public_key().public_bytes_raw())
        devices.append(dev)
    registry = {
        "server_id": "srv-py",
        "devices": {d: k.hex() for d, k in registered.items()},
        "groups": {GROUP: list(registered)},
        "gateways": {
            "gw-py": {"public_key": gateway_public.hex(), "represents": [GROUP]},
            "gw-outsider": {"public_key": outsider_public.hex(), "represents": []},
        },
    }
    (data / "group-registry.json").write_text(json.dumps(registry))
    proc = subprocess.Popen(
        [BIN, "group", "server", "--listen", "127.0.0.1:0", "--data", str(data), *server_args],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        hello = read_line(proc)
    except Exception:
        proc.kill()
        raise
    assert hello["public_key"] == server_public.hex()
    url = f"http://{hello['listening']}"
    members = dict(registered)
    return proc, {
        "gateway": pg.Gateway("gw-py", gateway_seed, server_public, url, members),
        "evidence": pg.Gateway("gw-py", gateway_seed, server_public, url, members, evidence=True),
        "outsider": pg.Gateway("gw-outsider", outsider_seed, server_public, url, members),
        "devices": devices,
        # Another instance of each device, without a clock (§7.1), with the same keys.
        "clockless": [
            pg.Device(d.id, seeds[d.id], server_public, {"gw-py": gateway_public}).without_clock()
            for d in devices
        ],
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    proc, w = start(tmp_path_factory)
    try:
        yield w
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def strict_world(tmp_path_factory):
    proc, w = start(tmp_path_factory, "--require-evidence")
    try:
        yield w
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def now():
    return int(time.time())


def test_independent_mode(world):
    gw, devices = world["gateway"], world["devices"]
    challenge, nonce = gw.challenge(GROUP, pg.INDEPENDENT, now())
    answers = [d.answer_independent(challenge, now()) for d in devices]
    confirmations, rejected = gw.relay_independent(GROUP, nonce, answers)
    assert sorted(confirmations) == ["py-0", "py-1", "py-2", "py-3"]
    assert rejected == {"py-4": 2}  # bad signature, found by the server
    for d in devices[:4]:
        channel = d.confirm(confirmations[d.id], now())
        # The keys are used: a sealed message through the relay, a sealed answer back (the
        # CLI server's application answers with an empty acknowledgement).
        sealed = channel.seal(b"hello " + d.id.encode())
        assert channel.open(gw.relay_sealed(sealed)) == b""
        with pytest.raises(pg.HttpError) as e:
            gw.relay_sealed(sealed)
        assert (e.value.status, e.value.body["error"]["code"]) == (422, "channel-error")
    # The server serves a challenge once (SER-012).
    with pytest.raises(pg.HttpError) as e:
        gw.relay_independent(GROUP, nonce, answers)
    assert (e.value.status, e.value.body["error"]["code"]) == (409, "challenge-already-used")


def test_represented_mode(world):
    gw, devices = world["gateway"], world["devices"]
    challenge, nonce = gw.challenge(GROUP, pg.REPRESENTED, now())
    mc = gw.member_challenge(GROUP, challenge)
    answers = [d.answer_represented(mc, now()) for d in devices]
    out = gw.assert_members(GROUP, challenge, nonce, mc, answers)
    assert out["accepted"] == 4
    assert sorted(out["asserted"]) == ["py-0", "py-1", "py-2", "py-3"]
    assert out["rejected"] == [["py-4", 2]]  # refused by the gateway itself
    assert out["expires_at"] > now()
    assert pg.decode(out["channel"].seal(b"group report"), pg.SEALED)[0] == out["channel"].session


def test_devices_without_a_clock_authenticate_in_both_modes(world):
    """§7.1 against the real server: the devices pass no time at all; their only time is
    what the server's signed challenges taught them."""
    gw, devices = world["gateway"], world["clockless"]
    challenge, nonce = gw.challenge(GROUP, pg.INDEPENDENT, now())
    answers = [d.answer_independent(challenge) for d in devices]
    issued_at = pg.decode(challenge, pg.CHALLENGE, devices[0].server_public)[5]
    assert all(d.learned == issued_at for d in devices)
    confirmations, rejected = gw.relay_independent(GROUP, nonce, answers)
    assert sorted(confirmations) == ["py-0", "py-1", "py-2", "py-3"]
    assert rejected == {"py-4": 2}
    for d in devices[:4]:
        channel = d.confirm(confirmations[d.id])
        assert channel.open(gw.relay_sealed(channel.seal(b"no clock"))) == b""
        with pytest.raises(pg.ProtocolError, match="replayed"):
            d.confirm(confirmations[d.id])
    with pytest.raises(pg.ProtocolError, match="replayed"):
        devices[0].answer_independent(challenge)
    challenge, nonce = gw.challenge(GROUP, pg.REPRESENTED, now())
    mc = gw.member_challenge(GROUP, challenge)
    out = gw.assert_members(GROUP, challenge, nonce, mc, [d.answer_represented(mc) for d in devices])
    assert sorted(out["asserted"]) == ["py-0", "py-1", "py-2", "py-3"]


def test_a_gateway_without_the_right_cannot_represent_the_group(world):
    with pytest.raises(pg.HttpError) as e:
        world["outsider"].challenge(GROUP, pg.REPRESENTED, now())
    assert (e.value.status, e.value.body["error"]["code"]) == (403, "gateway-not-authorized")
    # Independent mode needs no such right (SER-028).
    world["outsider"].challenge(GROUP, pg.INDEPENDENT, now())


def test_represented_mode_with_evidence_against_a_server_that_requires_it(strict_world):
    w = strict_world
    devices = w["devices"]
    # Without evidence the assertion is refused whole.
    challenge, nonce = w["gateway"].challenge(GROUP, pg.REPRESENTED, now())
    mc = w["gateway"].member_challenge(GROUP, challenge)
    answers = [d.answer_represented(mc, now()) for d in devices]
    with pytest.raises(pg.HttpError) as e:
        w["gateway"].assert_members(GROUP, challenge, nonce, mc, answers)
    assert (e.value.status, e.value.body["error"]["code"]) == (422, "evidence-required")
    # With the members' answers as evidence the server verifies them itself.
    gw = w["evidence"]
    challenge, nonce = gw.challenge(GROUP, pg.REPRESENTED, now())
    mc = gw.member_challenge(GROUP, challenge)
    answers = [d.answer_represented(mc, now()) for d in devices]
    out = gw.assert_members(GROUP, challenge, nonce, mc, answers)
    assert out["accepted"] == 4
    assert out["rejected"] == [["py-4", 2]]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.parametrize("clock", [True, False], ids=["clock", "no-clock"])
def test_python_devices_through_the_real_agent(tmp_path, clock):
    """The Python devices alone, through the real `palisade group agent` (the Rust gateway)
    to the real server, in both modes; then a sealed message relayed by the agent. Without
    a clock (§7.1) the devices pass no time."""
    def device_now():
        return now() if clock else None

    s, g = tmp_path / "s", tmp_path / "g"
    server_public = bytes.fromhex(subprocess.run(
        [BIN, "group", "init", "--data", str(s), "--out", str(s / "server.pub")],
        check=True, capture_output=True, text=True).stdout.strip())
    gateway_public = bytes.fromhex(subprocess.run(
        [BIN, "group", "init", "--data", str(g)], check=True, capture_output=True, text=True).stdout.strip())
    devices = [pg.Device(f"ag-{i}", os.urandom(32), server_public, {"gw-agent": gateway_public}) for i in range(3)]
    if not clock:
        devices = [d.without_clock() for d in devices]
    keys = {d.id: d.public.hex() for d in devices}
    (s / "group-registry.json").write_text(json.dumps({
        "server_id": "srv-agent", "devices": keys, "groups": {GROUP: list(keys)},
        "gateways": {"gw-agent": {"public_key": gateway_public.hex(), "represents": [GROUP]}},
    }))
    (g / "provision").mkdir()
    (g / "provision/trust.json").write_text(json.dumps({"gateway_id": "gw-agent"}))
    (g / "provision/state.json").write_text(json.dumps({
        "v": 1, "providers": {}, "seen": {}, "app_groups": {}, "app_keys": {},
        "devices": {d: {"key": k, "provider": "sp"} for d, k in keys.items()},
        "gateway_groups": {GROUP: {"provider": "sp", "members": sorted(keys)}},
    }))
    procs = []
    try:
        procs.append(subprocess.Popen([BIN, "group", "server", "--listen", "127.0.0.1:0", "--data", str(s)],
                                      stdout=subprocess.PIPE, text=True))
        server_url = "http://" + read_line(procs[0])["listening"]
        procs.append(subprocess.Popen([BIN, "group", "agent", "--listen", "127.0.0.1:0", "--data", str(g),
                                       "--server", server_url, "--server-key", str(s / "server.pub"),
                                       "--round-deadline", "20"], stdout=subprocess.PIPE, text=True))
        agent = "http://" + read_line(procs[1])["listening"] + f"/agent/v1/groups/{GROUP}"
        channels = {}
        for mode in ("independent", "represented"):
            started = json.loads(pg.post(f"{agent}/authenticate?mode={mode}", b""))
            assert started["expected"] == 3
            status, challenge = get(f"{agent}/challenge?mode={mode}")
            assert status == 200
            for d in devices:
                if mode == "independent":
                    answer = d.answer_independent(challenge, device_now())
                else:
                    answer = d.answer_represented(challenge, device_now())
                assert json.loads(pg.post(f"{agent}/answers", answer))["expected"] == 3
            for _ in range(400):
                result = json.loads(get(f"{agent}/result?mode={mode}")[1])
                if result["state"] in ("done", "failed"):
                    break
                time.sleep(0.05)
            assert result["state"] == "done", result
            assert sorted(result["authenticated"]) == sorted(keys)
            if mode == "independent":
                for d in devices:
                    status, conf = get(f"{agent}/confirmations/{d.id}")
                    assert status == 200
                    channels[d.id] = d.confirm(conf, device_now())
        relay = agent.split("/agent/v1/")[0] + "/agent/v1/sealed"
        for d in devices:
            c = channels[d.id]
            assert c.open(pg.post(relay, c.seal(b"through the Rust agent"))) == b""
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
