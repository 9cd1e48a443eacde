"""A device without a real-time clock (docs/group-auth-protocol.md §7.1), checked offline:
its time T only grows, only a server-signed challenge moves it, and a challenge held back
until a later one was issued is refused as expired. The same device against the real server
is in test_against_server.py."""

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import palisade_group as pg

SERVER = Ed25519PrivateKey.from_private_bytes(os.urandom(32))
SERVER_PUBLIC = SERVER.public_key().public_bytes_raw()


def challenge(issued_at, lifetime=60, key=SERVER):
    eph = pg.x25519_public(os.urandom(32))
    return pg.encode(
        pg.CHALLENGE,
        [pg.INDEPENDENT, "grp", "srv", "gw", os.urandom(32), issued_at, issued_at + lifetime, eph],
        key,
    )


def clockless():
    return pg.Device("dev-0", os.urandom(32), SERVER_PUBLIC).without_clock()


def test_a_held_back_challenge_is_refused_once_a_later_one_was_seen():
    d = clockless()
    held, later = challenge(1_000), challenge(1_120)
    d.answer_independent(later)
    assert d.learned == 1_120
    with pytest.raises(pg.ProtocolError, match="expired"):
        d.answer_independent(held)
    # T never moves back: a challenge issued earlier but still valid at T is answered and
    # leaves T where it was.
    d.answer_independent(challenge(1_100))
    assert d.learned == 1_120


def test_only_a_server_signature_moves_the_time():
    d = clockless()
    forged = challenge(10**12, key=Ed25519PrivateKey.from_private_bytes(os.urandom(32)))
    with pytest.raises(pg.ProtocolError, match="bad signature"):
        d.answer_independent(forged)
    assert d.learned == 0
    # So a forged far-future challenge cannot make the device refuse the real ones.
    d.answer_independent(challenge(2_000))
    assert d.learned == 2_000


def test_the_callers_time_is_ignored_and_challenges_stay_single_use():
    d = clockless()
    c = challenge(3_000)
    # A wildly wrong wall-clock time passed by a caller changes nothing.
    d.answer_independent(c, now=10**12)
    with pytest.raises(pg.ProtocolError, match="replayed"):
        d.answer_independent(c)


def test_a_device_with_a_clock_still_needs_the_time():
    d = pg.Device("dev-1", os.urandom(32), SERVER_PUBLIC)
    with pytest.raises(pg.ProtocolError, match="needs the time"):
        d.answer_independent(challenge(4_000))
    # And with its clock it refuses the same challenge once expired.
    with pytest.raises(pg.ProtocolError, match="expired"):
        d.answer_independent(challenge(4_000), now=4_060)
