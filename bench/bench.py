"""Runs every benchmark of `make bench` on this machine, in one run, and prints one table.

Figures are rates measured here and ratios between them; nothing is compared with figures from
another machine or another run. Two parts:
  - per-push cryptography: mod_web_push's native core (cargo bench), pywebpush, Node's web-push and
    the machine's own limit (openssl speed);
  - end to end: a real Prosody (13, and 0.12) on loopback, offline accounts subscribed through the
    enable IQ, a message each, pushes to a lean push service on loopback (e2e.py).
The machine is shared (other jobs may run tests on it): the bench waits a while for it to be
quiet, measures what other processes used meanwhile, and prints it with the figures."""

import argparse
import json
import os
import pickle
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV_PYTHON = sys.executable
sys.path.insert(0, HERE)

import procstat  # noqa: E402
import xmppload  # noqa: E402  (puts the e2e harness on the path)
import e2e  # noqa: E402
import report  # noqa: E402
from pushsink import PushSink  # noqa: E402
from harness import aio, procs  # noqa: E402
from harness.prosody import installed_version  # noqa: E402


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the machine -------------------------------------------------------------------------

def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = re.search(r"model name\s*:\s*(.*)", cpuinfo.read()).group(1)
    except (OSError, AttributeError):
        pass
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, {openssl}"


def our_cpu_seconds(*live_pids):
    """CPU used by this process, every child it waited for (and theirs), and the live `live_pids`."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    for pid in live_pids:
        try:
            total += procstat.process_seconds(pid)
        except OSError:
            pass
    return total


class OtherLoad:
    """How much of the machine processes not started by the bench used between two points."""

    def __init__(self, *live_pids):
        self.live = live_pids
        self.busy0, self.ours0, self.t0 = procstat.machine_busy_seconds(), our_cpu_seconds(*live_pids), time.monotonic()

    def cores(self):
        busy = procstat.machine_busy_seconds() - self.busy0
        ours = our_cpu_seconds(*self.live) - self.ours0
        return max(0.0, busy - ours) / (time.monotonic() - self.t0)


def wait_until_quiet(limit, threshold=0.15, window=2.0):
    """Waits (at most `limit` seconds) until other processes use less than `threshold` of a core
    over `window` seconds. Returns what they used in the last window."""
    deadline = time.monotonic() + limit
    while True:
        probe = OtherLoad()
        time.sleep(window)
        others = probe.cores()
        if others < threshold or time.monotonic() > deadline:
            return others
        log(f"other processes use {others:.2f} cores; waiting for a quieter machine")


# -- per-push cryptography -----------------------------------------------------------------

def run_json(command, cwd=ROOT, env=None):
    out = subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True, text=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def ours(seconds):
    env = dict(os.environ, BENCH_SECONDS=str(seconds))
    return run_json(["cargo", "bench", "--quiet", "--locked", "--bench", "native", "--", "--json"], env=env)


def pywebpush(seconds):
    return run_json([VENV_PYTHON, os.path.join(HERE, "peers", "pywebpush_peer.py"), str(seconds)])["per_sec"]


def node_webpush(seconds):
    return run_json(["node", os.path.join(HERE, "peers", "webpush_peer.js"), str(seconds)], cwd=HERE)["per_sec"]


def openssl_limit(seconds):
    """The machine's own limit for one push's cryptography, from `openssl speed` on one core: an
    ECDH (variable-base multiplication) plus a key generation, for which an ECDSA signature (one
    fixed-base multiplication and a little more) stands in as an upper bound, plus AES-128-GCM over
    a 256-byte record. HKDF adds under a microsecond and is left out."""
    out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "ecdhp256", "ecdsap256"],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    ecdh = float(re.search(r"256 bits ecdh \(nistp256\)\s+\S+s\s+([\d.]+)", out).group(1))
    sign = float(re.search(r"256 bits ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)", out).group(1))
    out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "-bytes", "256", "-evp", "aes-128-gcm"],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    aes_kbytes = float(re.search(r"^AES-128-GCM\s+([\d.]+)k", out, re.M).group(1))
    aes_per_sec = aes_kbytes * 1000 / 256
    per_push = 1 / ecdh + 1 / sign + 1 / aes_per_sec
    return {"ecdh_per_sec": ecdh, "sign_per_sec": sign, "aes256_per_sec": aes_per_sec, "per_sec": 1 / per_push}


def crypto(seconds, repeats):
    """Each contender `repeats` times, interleaved, and the best of each: on a shared machine the
    best run is the one least disturbed, and every contender gets the same chance."""
    runs = {"ours": [], "pywebpush": [], "node": []}
    for attempt in range(repeats):
        log(f"per-push cryptography, round {attempt + 1} of {repeats}")
        runs["ours"].append(ours(seconds))
        runs["pywebpush"].append(pywebpush(seconds))
        runs["node"].append(node_webpush(seconds))
    best = {key: max(run[key] for run in runs["ours"]) for key in runs["ours"][0] if key != "cores"}
    best["cores"] = runs["ours"][0]["cores"]
    return {
        "ours": best,
        "pywebpush": max(runs["pywebpush"]),
        "node": max(runs["node"]),
        "limit": openssl_limit(max(1, int(seconds))),
        "repeats": repeats,
    }


# -- end to end ---------------------------------------------------------------------------

def end_to_end(workdir, versions, accounts, pings, quiet_wait):
    """The e2e bench for each version (the first one with the worker sweep for the plot), each
    started on a quiet machine if one comes within `quiet_wait` seconds. Each result says how
    much of the machine other processes used while it ran."""
    sink = PushSink()
    pinger = xmppload.Pinger()
    results = []
    try:
        for index, version in enumerate(versions):
            wait_until_quiet(quiet_wait)
            log(f"end to end on Prosody {installed_version(version)} with {accounts} accounts")
            load = OtherLoad(sink.pid, pinger.pid)
            coroutine = e2e.run_version(version, os.path.join(workdir, f"prosody-{version}"), sink, pinger,
                                        accounts, full=index == 0, pings=pings if index == 0 else pings // 2, log=log)
            result = aio.run(coroutine, 600)
            result["other_load"] = load.cores()
            results.append(result)
    finally:
        sink.close()
        pinger.close()
        procs.kill_all()
    return results


def profile_only(args):
    import mainthread
    workdir = args.workdir or tempfile.mkdtemp(prefix="mod_web_push-bench-")
    version = args.versions.split()[0]
    print(f"Machine: {machine()}; Prosody {installed_version(version)}, {args.accounts} accounts", flush=True)
    wait_until_quiet(args.quiet_wait)
    sink = PushSink()
    pinger = xmppload.Pinger()
    try:
        coroutine = mainthread.run(version, os.path.join(workdir, f"prosody-{version}"), sink, pinger,
                                args.accounts, args.profile, log)
        print(aio.run(coroutine, 600), flush=True)
    finally:
        sink.close()
        pinger.close()
        procs.kill_all()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per cryptography figure")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each cryptography contender (best counts)")
    parser.add_argument("--accounts", type=int, default=300, help="subscribed accounts (as many again without)")
    parser.add_argument("--pings", type=int, default=100, help="pings per load condition")
    parser.add_argument("--versions", default="13 0.12", help="Prosody versions, the first gets the worker sweep")
    parser.add_argument("--plot", default=os.path.join(ROOT, "doc", "bench.png"), help="where the plot goes ('' for none)")
    parser.add_argument("--json", default="", help="also write the figures here")
    parser.add_argument("--pickle", default="", help="also keep the figures here, to redraw with plot.py")
    parser.add_argument("--workdir", default="", help="Prosody's files go here (default: a temp dir)")
    parser.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait at most for a quiet machine")
    parser.add_argument("--profile", type=int, default=0, metavar="BATCHES",
                        help="instead of the bench: perf profile of Prosody's main thread over this many "
                             "batches with pushes and as many without (first version only; needs perf)")
    args = parser.parse_args()
    if args.profile:
        return profile_only(args)

    started = time.monotonic()
    workdir = args.workdir or tempfile.mkdtemp(prefix="mod_web_push-bench-")
    versions = args.versions.split()
    print(f"Machine: {machine()}", flush=True)
    wait_until_quiet(args.quiet_wait)
    load = OtherLoad()
    figures = {"crypto": crypto(args.seconds, args.repeats)}
    figures["crypto"]["other_load"] = load.cores()
    figures["e2e"] = end_to_end(workdir, versions, args.accounts, args.pings, args.quiet_wait)
    figures["versions"] = {v: installed_version(v) for v in versions}
    figures["seconds"] = time.monotonic() - started

    text = report.render(figures)
    print(text, flush=True)
    if args.plot:
        import plot
        plot.draw(figures, args.plot)
        print(f"\nPlot: {os.path.relpath(args.plot, ROOT)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.plain(figures), f, indent=1)
    if args.pickle:
        with open(args.pickle, "wb") as f:
            pickle.dump(figures, f)
    print(f"make bench took {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()
