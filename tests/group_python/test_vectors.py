"""docs/group-auth-vectors/vectors.json checked by the independent implementation: every
message decodes in its one canonical form and verifies, re-encoding the fields with the
given keys gives the same bytes, and every derivation of §4 gives the recorded values."""

import hashlib
import json
import pathlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import palisade_group as pg

ROOT = pathlib.Path(__file__).resolve().parents[2]
V = json.loads((ROOT / "docs/group-auth-vectors/vectors.json").read_text())
X = bytes.fromhex


def ident(who):
    return V["identities"][who]


def seed_key(who):
    return Ed25519PrivateKey.from_private_bytes(X(ident(who)["seed"]))


def pub(who):
    return X(ident(who)["public_key"])


def test_seeds_give_the_public_keys():
    for who in ("server", "gateway", "device"):
        assert seed_key(who).public_key().public_bytes_raw() == pub(who)


def test_challenge_request():
    m = X(V["challenge_request"]["message"])
    mode, group, gw, issued_at, nonce = pg.decode(m, pg.REQUEST, pub("gateway"))
    assert (mode, group, gw, nonce) == (2, ident("group"), ident("gateway")["id"], X(V["challenge_request"]["random"]["nonce"]))
    assert pg.encode(pg.REQUEST, [mode, group, gw, issued_at, nonce], seed_key("gateway")) == m


def test_independent_exchange():
    v = V["independent"]
    msg = {k: X(h) for k, h in v["messages"].items()}
    mid = {k: X(h) for k, h in v["intermediate"].items()}
    rnd = {k: X(h) for k, h in v["random"].items()}

    ch = pg.decode(msg["group_challenge"], pg.CHALLENGE, pub("server"))
    assert ch[0] == pg.INDEPENDENT and ch[4] == rnd["server_nonce"]
    assert ch[7] == pg.x25519_public(rnd["server_ephemeral_secret"]) == mid["server_ephemeral_public"]
    assert pg.encode(pg.CHALLENGE, ch, seed_key("server")) == msg["group_challenge"]
    assert pg.digest(msg["group_challenge"]) == mid["challenge_digest"]

    # The device side reproduces its answer from the challenge, its seed and its secret.
    dev = pg.Device(ident("device")["id"], X(ident("device")["seed"]), pub("server"))
    now = V["times"]["challenge_issued_at"] + 1
    answer = dev.answer_independent(msg["group_challenge"], now, rnd["device_ephemeral_secret"])
    assert answer == msg["device_answer"]
    payload = pg.strict_loads(pg.strict_loads(answer).value[2])
    assert pg.cbor(["Signature1", pg.PROTECTED, pg.EXTERNAL_AAD, pg.cbor(payload)]) == mid["device_answer_sig_structure"]

    shared = pg.x25519(rnd["device_ephemeral_secret"], ch[7])
    assert shared == pg.x25519(rnd["server_ephemeral_secret"], mid["device_ephemeral_public"]) == mid["shared_secret"]
    t = pg.transcript(answer)
    assert t == mid["transcript_hash"]
    keys = pg.session_keys(shared, mid["challenge_digest"], t)
    assert keys["session"] == mid["session_id"]
    assert (keys["to_server"], keys["to_device"], keys["confirm"]) == (mid["key_to_server"], mid["key_to_device"], mid["key_confirm"])
    assert pg.confirmation_mac(keys, t) == mid["confirmation_mac"]

    group, gw, nonce, answers = pg.decode(msg["group_answers"], pg.ANSWERS, pub("gateway"))
    assert answers == [answer] and nonce == rnd["server_nonce"]
    assert pg.encode(pg.ANSWERS, [group, gw, nonce, answers], seed_key("gateway")) == msg["group_answers"]
    g, gw, n, confs, rejected = pg.decode(msg["group_confirmations"], pg.CONFIRMATIONS, pub("server"))
    assert confs == [msg["key_confirmation"]] and rejected == []
    assert pg.encode(pg.CONFIRMATIONS, [g, gw, n, confs, rejected], seed_key("server")) == msg["group_confirmations"]

    channel = dev.confirm(msg["key_confirmation"], now)
    with pytest.raises(pg.ProtocolError):
        dev.confirm(msg["key_confirmation"], now)
    assert channel.seal(X(v["plaintexts"]["sealed_to_server"])) == msg["sealed_to_server"]
    assert channel.open(msg["sealed_to_device"]) == X(v["plaintexts"]["sealed_to_device"])
    with pytest.raises(pg.ProtocolError):
        channel.open(msg["sealed_to_device"])  # the counter moved on


def test_represented_exchange():
    v = V["represented"]
    msg = {k: X(h) for k, h in v["messages"].items()}
    mid = {k: X(h) for k, h in v["intermediate"].items()}
    rnd = {k: X(h) for k, h in v["random"].items()}
    ch = pg.decode(msg["group_challenge"], pg.CHALLENGE, pub("server"))
    assert ch[0] == pg.REPRESENTED and ch[7] is None
    assert pg.digest(msg["group_challenge"]) == mid["challenge_digest"]
    mc = pg.decode(msg["member_challenge"], pg.MEMBER_CHALLENGE, pub("gateway"))
    assert mc[2] == mid["challenge_digest"] and mc[3] == rnd["gateway_member_nonce"]
    assert pg.encode(pg.MEMBER_CHALLENGE, mc, seed_key("gateway")) == msg["member_challenge"]

    dev = pg.Device(ident("device")["id"], X(ident("device")["seed"]), pub("server"), {ident("gateway")["id"]: pub("gateway")})
    answer = dev.answer_represented(msg["member_challenge"], V["times"]["challenge_issued_at"] + 1)
    assert answer == msg["device_answer"]

    a = pg.decode(msg["group_assertion"], pg.ASSERTION, pub("gateway"))
    assert a[4] == [ident("device")["id"]] and a[5] == []
    assert (a[7], a[8]) == (None, [])  # plain represented mode: no evidence
    assert a[6] == pg.x25519_public(rnd["gateway_ephemeral_secret"])
    assert pg.encode(pg.ASSERTION, a, seed_key("gateway")) == msg["group_assertion"]
    assert pg.digest(msg["group_assertion"]) == mid["assertion_digest"]

    s = pg.decode(msg["group_association"], pg.ASSOCIATION, pub("server"))
    group, gw, nonce, association, accepted, rejected, server_eph, wrapped, expires_at = s
    assert (association, accepted, rejected) == (rnd["association_id"], 1, [])
    assert pg.encode(pg.ASSOCIATION, s, seed_key("server")) == msg["group_association"]
    shared = pg.x25519(rnd["gateway_ephemeral_secret"], server_eph)
    assert shared == mid["wrap_shared_secret"]
    key = pg.unwrap_group_key(shared, mid["assertion_digest"], wrapped)
    assert key == rnd["group_key"]
    keys = pg.session_keys(key, hashlib.sha256(association).digest(), bytes(32))
    assert (keys["session"], keys["to_server"], keys["to_device"]) == (mid["session_id"], mid["key_to_server"], mid["key_to_device"])
    assert pg.Channel(keys).seal(X(v["plaintexts"]["sealed_to_server"])) == msg["sealed_to_server"]


def test_non_canonical_and_tampered_messages_are_refused():
    m = X(V["independent"]["messages"]["key_confirmation"])
    assert m[0] == 0x85
    with pytest.raises(pg.ProtocolError):
        pg.decode(bytes([0x98, 5]) + m[1:], pg.CONFIRMATION)
    ch = bytearray(X(V["independent"]["messages"]["group_challenge"]))
    ch[-1] ^= 1
    with pytest.raises(pg.ProtocolError):
        pg.decode(bytes(ch), pg.CHALLENGE, pub("server"))
