"""An independent implementation of Palisade group authentication, version 1: the device
side and a gateway relay, written from docs/group-auth-protocol.md alone (section numbers
below refer to it). Uses cbor2 for deterministic CBOR and `cryptography` for Ed25519,
X25519, HKDF and ChaCha20-Poly1305.
"""

import hashlib
import hmac
import json
import os
import urllib.error
import urllib.request

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
PROTECTED = bytes.fromhex("a10127")  # {1: -8}, alg EdDSA (§2.3)
EXTERNAL_AAD = b"palisade/group-auth/v1\x00"
MEDIA_TYPE = "application/vnd.palisade.group+cbor"

CHALLENGE, MEMBER_CHALLENGE, ANSWER, ANSWERS = 1, 2, 3, 4
ASSERTION, ASSOCIATION, CONFIRMATIONS, CONFIRMATION, SEALED = 5, 6, 7, 8, 9
REQUEST = 32
FIELDS = {1: 8, 2: 5, 3: 3, 4: 4, 5: 9, 6: 9, 7: 5, 8: 3, 9: 4, 32: 5}
REPRESENTED, INDEPENDENT = 1, 2
TO_SERVER, TO_DEVICE = 1, 2


class ProtocolError(Exception):
    """A message that this implementation refuses."""


# --- §2 encoding ---------------------------------------------------------------------


def cbor(obj):
    """Deterministic CBOR (§2.2 rule 1)."""
    return cbor2.dumps(obj, canonical=True)


def strict_loads(data):
    """Decodes and refuses anything but the one canonical form (§2.2 rule 2)."""
    obj = cbor2.loads(data)
    if cbor(obj) != data:
        raise ProtocolError("not deterministic CBOR")
    return obj


def sig_structure(payload):
    return cbor(["Signature1", PROTECTED, EXTERNAL_AAD, payload])


def encode(ty, fields, signer=None):
    """A message: the payload array, in a COSE_Sign1_Tagged when `signer` (an Ed25519
    private key) signs it (§2.3)."""
    assert len(fields) == FIELDS[ty]
    payload = cbor([VERSION, ty, *fields])
    if signer is None:
        return payload
    signature = signer.sign(sig_structure(payload))
    return cbor(cbor2.CBORTag(18, [PROTECTED, {}, payload, signature]))


def decode(data, ty, signer_public=None):
    """The fields of a message of type `ty`; a signed one's signature is verified under
    `signer_public` (raw 32 bytes)."""
    if len(data) > 8 << 20:
        raise ProtocolError("message too large")
    obj = strict_loads(data)
    if signer_public is not None:
        if not (isinstance(obj, cbor2.CBORTag) and obj.tag == 18):
            raise ProtocolError("expected a COSE_Sign1_Tagged")
        env = obj.value
        if not (isinstance(env, (list, tuple)) and len(env) == 4):
            raise ProtocolError("COSE_Sign1 has four items")
        protected, unprotected, payload, signature = env
        if protected != PROTECTED or unprotected != {}:
            raise ProtocolError("unexpected COSE headers")
        if not (isinstance(signature, bytes) and len(signature) == 64):
            raise ProtocolError("signature is 64 bytes")
        try:
            Ed25519PublicKey.from_public_bytes(signer_public).verify(
                signature, sig_structure(payload)
            )
        except InvalidSignature:
            raise ProtocolError("bad signature") from None
        obj = strict_loads(payload)
    if not (isinstance(obj, list) and len(obj) == FIELDS[ty] + 2):
        raise ProtocolError("payload shape")
    if obj[0] != VERSION:
        raise ProtocolError(f"version {obj[0]}")
    if obj[1] != ty:
        raise ProtocolError(f"type {obj[1]}, expected {ty}")
    return obj[2:]


def digest(data):
    return hashlib.sha256(data).digest()


def valid_id(s):
    return isinstance(s, str) and 1 <= len(s) <= 128 and all(0x21 <= ord(c) <= 0x7E for c in s)


# --- §4 derivations --------------------------------------------------------------------


def x25519(secret, public):
    shared = X25519PrivateKey.from_private_bytes(secret).exchange(
        X25519PublicKey.from_public_bytes(public)
    )
    if shared == bytes(32):
        raise ProtocolError("low-order X25519 key")
    return shared


def x25519_public(secret):
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


def hkdf(salt, ikm, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def transcript(answer_bytes):
    return digest(b"palisade/group/v1/transcript" + answer_bytes)


def session_keys(ikm, salt, context):
    k = lambda label: hkdf(salt, ikm, b"palisade/group/v1 " + label + context)
    return {
        "session": k(b"session-id")[:16],
        "to_server": k(b"to-server"),
        "to_device": k(b"to-device"),
        "confirm": k(b"confirm"),
    }


def confirmation_mac(keys, transcript_hash):
    return hmac.new(
        keys["confirm"], b"palisade/group/v1 server-confirms" + transcript_hash, "sha256"
    ).digest()


def unwrap_group_key(shared, assertion_digest, wrapped):
    kek = hkdf(assertion_digest, shared, b"palisade/group/v1 group-key-wrap")
    return ChaCha20Poly1305(kek).decrypt(bytes(12), wrapped, assertion_digest)


class Channel:
    """One end of the sealed channel (§4, sealed messages)."""

    def __init__(self, keys, device_end=True):
        self.session = keys["session"]
        self.send_dir = TO_SERVER if device_end else TO_DEVICE
        self.recv_dir = TO_DEVICE if device_end else TO_SERVER
        self.keys = {TO_SERVER: keys["to_server"], TO_DEVICE: keys["to_device"]}
        self.send_next = 0
        self.recv_next = 0

    @staticmethod
    def _nonce(direction, counter):
        return bytes([direction, 0, 0, 0]) + counter.to_bytes(8, "big")

    def _aad(self, direction, counter):
        return b"palisade/group/v1 channel" + self.session + bytes([direction]) + counter.to_bytes(8, "big")

    def seal(self, plaintext):
        c, d = self.send_next, self.send_dir
        self.send_next += 1
        ct = ChaCha20Poly1305(self.keys[d]).encrypt(self._nonce(d, c), plaintext, self._aad(d, c))
        return encode(SEALED, [self.session, d, c, ct])

    def open(self, data):
        session, d, c, ct = decode(data, SEALED)
        if session != self.session or d != self.recv_dir:
            raise ProtocolError("misrouted")
        pt = ChaCha20Poly1305(self.keys[d]).decrypt(self._nonce(d, c), ct, self._aad(d, c))
        if c != self.recv_next:
            raise ProtocolError(f"counter {c}, expected {self.recv_next}")
        self.recv_next += 1
        return pt


# --- §5, §6 the device -------------------------------------------------------------------


class Device:
    def __init__(self, device_id, seed, server_public, gateways=None):
        self.id = device_id
        self.key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self.key.public_key().public_bytes_raw()
        self.server_public = server_public
        self.gateways = dict(gateways or {})
        self.answered = set()
        self.pending = {}
        self.confirmed = set()
        # None: the device has a real-time clock and the callers' `now` is used. An int: a
        # device without one (§7.1), T, the largest issued_at of a GroupChallenge whose server
        # signature verified; it stands in for the time in every check.
        self.learned = None

    def without_clock(self, learned=0):
        """A device without a real-time clock (§7.1): the `now` its callers pass is ignored
        (pass None). `learned` is T kept across a restart (0 for a new device)."""
        self.learned = learned
        return self

    def _time(self, now):
        if self.learned is not None:
            return self.learned
        if now is None:
            raise ProtocolError("a device with a clock needs the time")
        return now

    def _check_window(self, issued_at, expires_at, now):
        if expires_at <= issued_at or issued_at > now + 30:
            raise ProtocolError("invalid validity")
        if now >= expires_at:
            raise ProtocolError("challenge expired")

    def answer_independent(self, challenge, now=None, ephemeral_secret=None):
        mode, group, server, gateway, nonce, issued_at, expires_at, server_eph = decode(
            challenge, CHALLENGE, self.server_public
        )
        if mode != INDEPENDENT or server_eph is None:
            raise ProtocolError("not an independent-mode challenge")
        if self.learned is not None:
            # Only after the server's signature verified (decode): nobody else moves T.
            self.learned = max(self.learned, issued_at)
        now = self._time(now)
        self._check_window(issued_at, expires_at, now)
        d = digest(challenge)
        if d in self.answered:
            raise ProtocolError("challenge replayed")
        secret = ephemeral_secret or os.urandom(32)
        shared = x25519(secret, server_eph)
        answer = encode(ANSWER, [self.id, d, x25519_public(secret)], self.key)
        self.answered.add(d)
        t = transcript(answer)
        self.pending[d] = (session_keys(shared, d, t), t, expires_at)
        return answer

    def answer_represented(self, member_challenge, now=None):
        # The gateway is named inside the signed payload: read it, then verify under its key.
        unsigned = strict_loads(strict_loads(member_challenge).value[2])
        gateway = unsigned[3]
        if gateway not in self.gateways:
            raise ProtocolError(f"untrusted gateway {gateway!r}")
        group, gateway, session, nonce, expires_at = decode(
            member_challenge, MEMBER_CHALLENGE, self.gateways[gateway]
        )
        now = self._time(now)
        if now >= expires_at:
            raise ProtocolError("challenge expired")
        d = digest(member_challenge)
        if d in self.answered:
            raise ProtocolError("challenge replayed")
        self.answered.add(d)
        return encode(ANSWER, [self.id, d, None], self.key)

    def confirm(self, confirmation, now=None):
        device, challenge, mac = decode(confirmation, CONFIRMATION)
        if challenge in self.confirmed:
            raise ProtocolError("confirmation replayed")
        if device != self.id or challenge not in self.pending:
            raise ProtocolError("unknown session")
        keys, t, expires_at = self.pending[challenge]
        now = self._time(now)
        if now >= expires_at:
            raise ProtocolError("expired")
        if not hmac.compare_digest(mac, confirmation_mac(keys, t)):
            raise ProtocolError("bad confirmation")  # stays pending (§5)
        del self.pending[challenge]
        self.confirmed.add(challenge)
        return Channel(keys, device_end=True)


# --- §5, §6 a gateway relay ---------------------------------------------------------------


class HttpError(Exception):
    def __init__(self, status, body):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def post(url, body):
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": MEDIA_TYPE})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        raise HttpError(e.code, json.loads(e.read() or b"{}")) from None


class Gateway:
    """A gateway relay speaking to the server role over HTTP (docs/group-auth.md)."""

    def __init__(self, gateway_id, seed, server_public, server_url, members, evidence=False):
        self.id = gateway_id
        self.evidence = evidence  # represented mode with evidence (§6)
        self.key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self.key.public_key().public_bytes_raw()
        self.server_public = server_public
        self.url = server_url.rstrip("/")
        self.members = dict(members)  # device id -> Ed25519 public key

    def challenge(self, group, mode, now):
        req = encode(REQUEST, [mode, group, self.id, now, os.urandom(32)], self.key)
        ch = post(f"{self.url}/group/v1/challenge", req)
        m, g, server, gw, nonce, issued_at, expires_at, eph = decode(ch, CHALLENGE, self.server_public)
        if (m, g, gw) != (mode, group, self.id):
            raise ProtocolError("challenge for another mode, group or gateway")
        if expires_at <= issued_at or now >= expires_at:
            raise ProtocolError("challenge not valid now")
        return ch, nonce

    # Independent mode: relay only.
    def relay_independent(self, group, nonce, answers):
        batch = encode(ANSWERS, [group, self.id, nonce, list(answers)], self.key)
        out = post(f"{self.url}/group/v1/independent", batch)
        g, gw, n, confirmations, rejected = decode(out, CONFIRMATIONS, self.server_public)
        if (g, gw, n) != (group, self.id, nonce):
            raise ProtocolError("confirmations for another round")
        by_device = {decode(c, CONFIRMATION)[0]: c for c in confirmations}
        return by_device, {d: r for d, r in rejected}

    def relay_sealed(self, sealed):
        """Relays a device's SealedMessage to the server and the sealed answer back (§4),
        as bytes this gateway has no key to read."""
        return post(f"{self.url}/group/v1/sealed", sealed)

    # Represented mode: the gateway's own challenge, local verification, the assertion.
    def member_challenge(self, group, server_challenge):
        fields = decode(server_challenge, CHALLENGE, self.server_public)
        expires_at = fields[6]
        mc = encode(
            MEMBER_CHALLENGE,
            [group, self.id, digest(server_challenge), os.urandom(32), expires_at],
            self.key,
        )
        return mc

    def assert_members(self, group, server_challenge, nonce, member_challenge, answers):
        want = digest(member_challenge)
        good, rejected, seen, evidence = [], [], set(), []
        for a in answers:
            try:
                payload = strict_loads(strict_loads(a).value[2])
                device = payload[2]
            except Exception:
                continue
            if device in seen:
                rejected.append([device, 3])
                continue
            seen.add(device)
            if device not in self.members:
                rejected.append([device, 1])
                continue
            try:
                d, challenge, eph = decode(a, ANSWER, self.members[device])
            except ProtocolError:
                rejected.append([device, 2])
                continue
            if challenge != want:
                rejected.append([device, 4])
            elif eph is not None:
                rejected.append([device, 7])
            else:
                good.append(device)
                evidence.append(a)
        eph_secret = os.urandom(32)
        assertion = encode(
            ASSERTION,
            [
                group,
                self.id,
                nonce,
                digest(server_challenge),
                good,
                rejected,
                x25519_public(eph_secret),
                member_challenge if self.evidence else None,
                evidence if self.evidence else [],
            ],
            self.key,
        )
        out = post(f"{self.url}/group/v1/represented", assertion)
        (g, gw, n, association, accepted, refused, server_eph, wrapped, expires_at) = decode(
            out, ASSOCIATION, self.server_public
        )
        if (g, gw, n) != (group, self.id, nonce):
            raise ProtocolError("association for another round")
        key = unwrap_group_key(x25519(eph_secret, server_eph), digest(assertion), wrapped)
        keys = session_keys(key, digest(association), bytes(32))
        return {
            "association": association,
            "accepted": accepted,
            "asserted": good,
            # The server lists the assertion's refusals first, then its own (§6).
            "rejected": [list(r) for r in refused],
            "expires_at": expires_at,
            "channel": Channel(keys, device_end=True),
        }


# --- §12 request proofs -------------------------------------------------------------------

REQUEST_PROOF = 10
PROOF_HEADER = "X-Palisade-Group-Proof"


def b64url(data):
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def request_proof_payload(gateway, association, device, counter, method, target, originator,
                          request_id, body):
    """The never-sent payload of type 10 (§12.3)."""
    return cbor([VERSION, REQUEST_PROOF, gateway, association, device, counter, method, target,
                 originator, request_id, hashlib.sha256(body).digest()])


class RequestSigner:
    """A device's request proofs for one association (§12): `A` is the digest its answer
    named; the counter starts at 0 and grows by one per request (§12.4)."""

    def __init__(self, device, gateway, association, counter=0):
        self.device, self.gateway, self.association = device, gateway, association
        self.counter = counter

    def proof(self, method, target, request_id, body=b"", originator=None, counter=None):
        """The header value for one request; `originator` and `counter` default to the
        device's own and the next one (tests pass others to forge)."""
        if counter is None:
            counter = self.counter
            self.counter += 1
        payload = request_proof_payload(
            self.gateway, self.association, self.device.id, counter, method, target,
            originator if originator is not None else self.device.id, request_id, body)
        signature = self.device.key.sign(sig_structure(payload))
        return f"v1.{b64url(self.association)}.{counter}.{b64url(signature)}"
