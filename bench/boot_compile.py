#!/usr/bin/env python3
"""Cold boot of `palisade serve` (empty data dir: no artifact cache) until it prints its
listening address, with modules compiled in-process (PALISADE_COMPILE_IN_PROCESS=1, the old
behaviour) or by the compile helper, side by side, alternating, median of N runs."""
import os, subprocess, sys, tempfile, time, statistics, shutil

palisade, acp = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3

def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7f; n >>= 7
        if n == 0: out.append(b); return bytes(out)
        out.append(b | 0x80)

def marked(module, text):
    name = b"bench-marker"
    payload = leb(len(name)) + name + text.encode()
    return module + b"\x00" + leb(len(payload)) + payload

def config(dir, apps, distinct):
    module = open(acp, "rb").read()
    text = "[limits]\nmax_in_flight = 1024\n"
    for i in range(apps):
        if distinct:
            path = os.path.join(dir, f"app-{i}.wasm")
            open(path, "wb").write(marked(module, f"app-{i}"))
            plugin = path
        else:
            plugin = acp
        text += (f'\n[[app]]\nname = "app-{i}"\npaths = ["/cse-in/app-{i}"]\n'
                 f'[[app.plugin]]\nplugin = "{plugin}"\n'
                 f'config = {{ policies = [ {{ id = "p{i}", pv = {{ acr = [ {{ acor = ["originator:CAE1"], acop = 2 }} ] }} }} ] }}\n')
    path = os.path.join(dir, "gateway.toml")
    open(path, "w").write(text)
    return path

def boot(cfg, in_process):
    data = tempfile.mkdtemp(prefix="palisade-boot-")
    env = dict(os.environ)
    env.pop("PALISADE_COMPILE_IN_PROCESS", None)
    if in_process:
        env["PALISADE_COMPILE_IN_PROCESS"] = "1"
    start = time.monotonic()
    p = subprocess.Popen([palisade, "--log-level", "warn", "serve", "--config", cfg,
                          "--listen", "127.0.0.1:0", "--data", data],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        for line in p.stdout:
            if "listening on" in line:
                return (time.monotonic() - start) * 1000
        raise RuntimeError("gateway exited before listening")
    finally:
        p.kill(); p.wait(); shutil.rmtree(data, ignore_errors=True)

with tempfile.TemporaryDirectory() as dir:
    for apps, distinct in [(1, False), (100, False), (100, True)]:
        cfg = config(dir, apps, distinct)
        times = {True: [], False: []}
        for _ in range(runs):
            for in_process in (True, False):
                times[in_process].append(boot(cfg, in_process))
        a, b = statistics.median(times[True]), statistics.median(times[False])
        label = f"{apps} app{'s' if apps > 1 else ''}" + (", distinct modules" if distinct else ", one module")
        print(f"| {label} | {a:.0f} ms | {b:.0f} ms | {b - a:+.0f} ms |  (runs: in-process {[round(t) for t in times[True]]}, helper {[round(t) for t in times[False]]})", flush=True)
