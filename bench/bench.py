"""Runs every benchmark of `make bench` on this machine, in one run, and prints one table.

Figures are rates measured here and ratios between them; nothing is compared with figures from
another machine or another run."""

import argparse
import json
import os
import platform
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV_PYTHON = sys.executable


def run_json(command, cwd=ROOT, env=None):
    out = subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True, text=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def ours(seconds):
    env = dict(os.environ, BENCH_SECONDS=str(seconds))
    return run_json(["cargo", "bench", "--quiet", "--bench", "native", "--", "--json"], env=env)


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


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = re.search(r"model name\s*:\s*(.*)", cpuinfo.read()).group(1)
    except (OSError, AttributeError):
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    args = parser.parse_args()

    print(f"Machine: {machine()}", flush=True)
    native = ours(args.seconds)
    python_rate = pywebpush(args.seconds)
    node_rate = node_webpush(args.seconds)
    limit = openssl_limit(max(1, int(args.seconds)))

    fastest_peer = max(python_rate, node_rate)
    one = native["prepare_per_sec_1"]
    rows = [
        ("mod_web_push (encrypt + cached VAPID token)", one, 1.0),
        ("pywebpush 2.5.0 (encrypt + VAPID sign)", python_rate, python_rate / one),
        ("web-push 3.6.7 for Node (encrypt + VAPID sign)", node_rate, node_rate / one),
        ("machine limit: openssl speed ECDH + key generation + AES-GCM", limit["per_sec"], limit["per_sec"] / one),
    ]
    print()
    print("Per-push cryptography, one core")
    print()
    print("| who | pushes/s per core | µs per push | relative to mod_web_push |")
    print("|---|---:|---:|---:|")
    for name, rate, ratio in rows:
        print(f"| {name} | {rate:,.0f} | {1e6 / rate:.1f} | {ratio:.2f}x |")
    print()
    print(f"- mod_web_push is {one / fastest_peer:.2f}x the fastest peer per core, "
          f"and reaches {one / limit['per_sec']:.0%} of the machine's limit for that work.")
    print(f"- Over {native['cores']} cores: {native['prepare_per_sec_all']:,.0f} pushes/s "
          f"({native['prepare_per_sec_all'] / one:.2f}x one core).")
    print(f"- An uncached VAPID signature costs {1e6 / native['vapid_sign_per_sec']:.0f} µs; "
          f"tokens are cached per push service, so a push pays it about once in 6 hours.")
    print(f"- Sender to a push service on loopback (HTTP included): {native['sender_per_sec_1']:,.0f}/s with 1 worker, "
          f"{native['sender_per_sec_all']:,.0f}/s with {native['cores']}.")


if __name__ == "__main__":
    main()
