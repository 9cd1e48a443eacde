"""§12 end to end: Python devices authenticate through the real `palisade group agent` to the
real `palisade group server`, then send oneM2M requests with request proofs computed from
§12 alone through a real `palisade serve` proxy to a test CSE. A valid proof makes the
originator authenticated (an ACP rule with acaf permits it) in an app that opts in; a
replayed counter, a wrong signature, another originator, an expired association and an app
that does not opt in never authenticate."""

import http.server
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

import palisade_group as pg
from test_against_server import BIN, GROUP, get, read_line


class StandInCse(http.server.ThreadingHTTPServer):
    """A stand-in CSE on 127.0.0.1: answers every request 2000 and records its headers."""

    def __init__(self):
        self.received = []
        cse = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                cse.received.append({k.lower(): v for k, v in self.headers.items()})
                body = b'{"m2m:cin":{"con":"21.5"}}'
                self.send_response(200)
                self.send_header("X-M2M-RSC", "2000")
                self.send_header("X-M2M-RI", self.headers.get("X-M2M-RI", ""))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


def serve(tmp_path, cse_url, associations):
    """`palisade serve` with two apps under the same ACP rule (any originator, retrieve and
    create, authenticated requests only): `meters` accepts group proofs, `others` does not."""
    rule = '{ policies = [ { id = "p", pv = { acr = [ { acor = ["all"], acop = 63, acaf = true } ] } } ] }'
    config = f"""
group_associations = "{associations}"

[upstream]
url = "{cse_url}"

[[app]]
name = "meters"
paths = ["/cse-in/meters"]
group_authenticated = true
[[app.plugin]]
plugin = "acp"
config = {rule}

[[app]]
name = "others"
paths = ["/cse-in/others"]
[[app.plugin]]
plugin = "acp"
config = {rule}
"""
    (tmp_path / "gateway.toml").write_text(config)
    proc = subprocess.Popen(
        [BIN, "serve", "--config", str(tmp_path / "gateway.toml"), "--listen", "127.0.0.1:0",
         "--data", str(tmp_path / "serve-data")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on " in line:
            address = line.split("listening on ")[1].split("://")[1].split()[0]
            threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
            return proc, f"http://{address}"
    proc.kill()
    raise RuntimeError("palisade serve did not start")


def send(proxy, method, path, originator, ri, body=b"", proof=None, content_type=None):
    headers = {"X-M2M-Origin": originator, "X-M2M-RI": ri}
    if proof is not None:
        headers[pg.PROOF_HEADER] = proof
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(proxy + path, data=body if method == "POST" else None,
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("X-M2M-RSC"), r.headers.get("X-Palisade-Decision-Id")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("X-M2M-RSC"), e.headers.get("X-Palisade-Decision-Id")


def authenticate(agent, mode, devices):
    """One round through the real agent; returns the association reference A, the digest of
    the challenge the devices answered (§12.2)."""
    started = json.loads(pg.post(f"{agent}/authenticate?mode={mode}", b""))
    assert started["expected"] == len(devices)
    status, challenge = get(f"{agent}/challenge?mode={mode}")
    assert status == 200
    for d in devices:
        if mode == "independent":
            answer = d.answer_independent(challenge, int(time.time()))
        else:
            answer = d.answer_represented(challenge, int(time.time()))
        pg.post(f"{agent}/answers", answer)
    for _ in range(400):
        result = json.loads(get(f"{agent}/result?mode={mode}")[1])
        if result["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert result["state"] == "done", result
    assert sorted(result["authenticated"]) == sorted(d.id for d in devices)
    return pg.digest(challenge)


def audit_line(data, decision_id):
    for path in (data / "audit").iterdir():
        for line in path.read_text(errors="replace").splitlines():
            if decision_id in line:
                return json.loads(line)["payload"]
    raise AssertionError(f"decision {decision_id} not in the audit log")


def test_request_proofs_through_the_real_proxy(tmp_path):
    s, g = tmp_path / "s", tmp_path / "g"
    server_public = bytes.fromhex(subprocess.run(
        [BIN, "group", "init", "--data", str(s), "--out", str(s / "server.pub")],
        check=True, capture_output=True, text=True).stdout.strip())
    gateway_public = bytes.fromhex(subprocess.run(
        [BIN, "group", "init", "--data", str(g)], check=True, capture_output=True, text=True).stdout.strip())
    # A device's group identity is its originator (§12.3).
    devices = [pg.Device(f"CAE-py-{i}", os.urandom(32), server_public, {"gw-proxy": gateway_public})
               for i in range(3)]
    keys = {d.id: d.public.hex() for d in devices}
    (s / "group-registry.json").write_text(json.dumps({
        "server_id": "srv-proxy", "devices": keys, "groups": {GROUP: list(keys)},
        "gateways": {"gw-proxy": {"public_key": gateway_public.hex(), "represents": [GROUP]}},
    }))
    (g / "provision").mkdir()
    (g / "provision/trust.json").write_text(json.dumps({"gateway_id": "gw-proxy"}))
    (g / "provision/state.json").write_text(json.dumps({
        "v": 1, "providers": {}, "seen": {}, "app_groups": {}, "app_keys": {},
        "devices": {d: {"key": k, "provider": "sp"} for d, k in keys.items()},
        "gateway_groups": {GROUP: {"provider": "sp", "members": sorted(keys)}},
    }))
    associations = g / "associations.json"
    cse = StandInCse()
    procs = []
    try:
        # The proxy first: it accepts only associations made after it started (§12.4).
        proxy_proc, proxy = serve(tmp_path, cse.url, associations)
        procs.append(proxy_proc)
        procs.append(subprocess.Popen([BIN, "group", "server", "--listen", "127.0.0.1:0", "--data", str(s)],
                                      stdout=subprocess.PIPE, text=True))
        server_url = "http://" + read_line(procs[-1])["listening"]
        procs.append(subprocess.Popen([BIN, "group", "agent", "--listen", "127.0.0.1:0", "--data", str(g),
                                       "--server", server_url, "--server-key", str(s / "server.pub"),
                                       "--associations", str(associations)],
                                      stdout=subprocess.PIPE, text=True))
        agent = "http://" + read_line(procs[-1])["listening"] + f"/agent/v1/groups/{GROUP}"

        a_ind = authenticate(agent, "independent", devices)
        a_rep = authenticate(agent, "represented", devices)
        d0, d1, d2 = devices
        s0 = pg.RequestSigner(d0, "gw-proxy", a_ind)
        path = "/cse-in/meters/cnt?rcn=1"

        # A valid proof: authenticated, the acaf rule permits, the CSE gets no proof header.
        proof = s0.proof("GET", path, "r-1")
        ok = send(proxy, "GET", path, d0.id, "r-1", proof=proof)
        assert ok[:2] == (200, "2000"), ok
        assert len(cse.received) == 1
        assert pg.PROOF_HEADER.lower() not in cse.received[0]
        # A create with a body: the body is covered.
        body = b'{"m2m:cin":{"con":"22"}}'
        created = send(proxy, "POST", "/cse-in/meters/cnt", d0.id, "r-2", body,
                       s0.proof("POST", "/cse-in/meters/cnt", "r-2", body), "application/json;ty=4")
        assert created[:2] == (200, "2000"), created
        # The same proof again: a replayed counter.
        replayed = send(proxy, "GET", path, d0.id, "r-1", proof=proof)
        assert replayed[:2] == (403, "4106"), replayed
        # A changed body under a proof made for another: the signature does not verify.
        tampered = send(proxy, "POST", "/cse-in/meters/cnt", d0.id, "r-3", b'{"m2m:cin":{"con":"99"}}',
                        s0.proof("POST", "/cse-in/meters/cnt", "r-3", body), "application/json;ty=4")
        assert tampered[:2] == (403, "4106"), tampered
        # Device 1 signing for device 0's originator: not device 0's key.
        s1 = pg.RequestSigner(d1, "gw-proxy", a_ind)
        other = send(proxy, "GET", path, d0.id, "r-4", proof=s1.proof("GET", path, "r-4", originator=d0.id))
        assert other[:2] == (403, "4106"), other
        # An association reference no round made.
        forged = pg.RequestSigner(d1, "gw-proxy", os.urandom(32))
        unknown = send(proxy, "GET", path, d1.id, "r-5", proof=forged.proof("GET", path, "r-5"))
        assert unknown[:2] == (403, "4106"), unknown
        # Device 1's own proof, in the represented round's association: valid.
        s1r = pg.RequestSigner(d1, "gw-proxy", a_rep)
        rep = send(proxy, "GET", path, d1.id, "r-6", proof=s1r.proof("GET", path, "r-6"))
        assert rep[:2] == (200, "2000"), rep
        # An app that does not opt in: the proof is ignored, the request is not
        # authenticated, and the acaf rule denies it (4103).
        others = "/cse-in/others/cnt"
        ignored = send(proxy, "GET", others, d0.id, "r-7", proof=s0.proof("GET", others, "r-7"))
        assert ignored[:2] == (403, "4103"), ignored
        # No proof at all: claimed, not authenticated.
        bare = send(proxy, "GET", path, d0.id, "r-8")
        assert bare[:2] == (403, "4103"), bare
        # An expired association: device 2's records expire (the file is the agent's; it is
        # rewritten as the agent does, temp file and rename).
        records = json.loads(associations.read_text())
        for r in records["associations"]:
            if r["device"] == d2.id:
                r["expires_at"] = int(time.time()) - 1
        (g / "rewritten.json").write_text(json.dumps(records))
        os.replace(g / "rewritten.json", associations)
        s2 = pg.RequestSigner(d2, "gw-proxy", a_ind)
        expired = send(proxy, "GET", path, d2.id, "r-9", proof=s2.proof("GET", path, "r-9"))
        assert expired[:2] == (403, "4106"), expired
        assert len(cse.received) == 3, "only the permitted requests reached the CSE"

        # The audit says how each originator was established, and why one was refused.
        proxy_proc.terminate()
        proxy_proc.wait(timeout=30)
        data = tmp_path / "serve-data"
        assert audit_line(data, ok[2])["originator_auth"] == "group"
        assert "group-proof" not in json.dumps(audit_line(data, ok[2]))
        for refused, why in [(replayed, "used or is too old"), (tampered, "does not verify"),
                             (other, "does not verify"), (unknown, "no group association"),
                             (expired, "expired")]:
            line = audit_line(data, refused[2])
            assert line["effect"] == "deny" and line["originator_auth"] == "group", line
            assert why in line["reason"], line
        assert audit_line(data, ignored[2])["originator_auth"] == "claimed"
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=10)
        cse.shutdown()
