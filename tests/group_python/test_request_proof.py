"""docs/group-auth-vectors/request-proof.json checked by the independent implementation
from §12 alone: the payload, the Sig_structure, the signature and the header."""

import json
import pathlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import palisade_group as pg

ROOT = pathlib.Path(__file__).resolve().parents[2]
V = json.loads((ROOT / "docs/group-auth-vectors/request-proof.json").read_text())
X = bytes.fromhex


def test_the_request_proof_vector():
    key = Ed25519PrivateKey.from_private_bytes(X(V["device_seed"]))
    assert key.public_key().public_bytes_raw() == X(V["device_public"])
    body = V["body"].encode()
    payload = pg.request_proof_payload(
        V["gateway"], X(V["association"]), V["device"], V["counter"], V["method"],
        V["target"], V["originator"], V["request_id"], body)
    assert payload.hex() == V["payload"]
    assert pg.sig_structure(payload).hex() == V["sig_structure"]
    # Ed25519 is deterministic: the same key and bytes give the same signature.
    assert key.sign(pg.sig_structure(payload)).hex() == V["signature"]

    class Dev:
        id = V["device"]
    Dev.key = key
    signer = pg.RequestSigner(Dev, V["gateway"], X(V["association"]), counter=V["counter"])
    header = signer.proof(V["method"], V["target"], V["request_id"], body)
    assert header == V["header"]
    assert signer.counter == V["counter"] + 1
