"""The figures of one `make bench` run as markdown tables, the targets of issue 6 with whether
each is met, and a JSON-friendly copy of everything."""

import dataclasses
import statistics

from e2e import percentile

PING_CONDITIONS = [
    ("idle", "idle"),
    ("flood_plain", "messages at full speed, no subscription"),
    ("flood_push", "messages at full speed, each one a push"),
    ("half_plain", "messages at half the push limit, no subscription"),
    ("half_push", "messages at half the push limit, each one a push"),
]


def median(values):
    values = list(values)
    return statistics.median(values) if values else float("nan")


def us(seconds):
    return seconds * 1e6


def ms(seconds):
    return seconds * 1e3


def per_message(run, field):
    return getattr(run, field) / run.messages


class Version:
    """The figures of one Prosody version, condensed."""

    def __init__(self, result, crypto):
        self.r = result
        sub, plain = result["subscribed"], result["plain"]
        self.accounts = result["accounts"]
        self.push_rate = median(run.push_rate for run in sub)
        self.rate_sub = median(run.handled_rate for run in sub)
        self.rate_plain = median(run.handled_rate for run in plain)
        self.rate_unloaded = median(run.handled_rate for run in result["unloaded"])
        self.main_sub = median(us(per_message(run, "main")) for run in sub)
        self.main_plain = median(us(per_message(run, "main")) for run in plain)
        self.main_plain_again = median(us(per_message(run, "main")) for run in result["plain_again"])
        self.main_unloaded = median(us(per_message(run, "main")) for run in result["unloaded"])
        # Each subscribed batch against the plain batch right after it: the pairs share whatever
        # the machine was doing at the time.
        self.per_push = median(us(per_message(a, "main") - per_message(b, "main")) for a, b in zip(sub, plain))
        pushes = sum(run.pushes for run in sub)
        self.per_push_ticks = us(sum(r.main_ticks for r in sub) - sum(r.main_ticks for r in plain)) / pushes
        self.module_per_message = self.main_plain - self.main_unloaded
        self.main_busy = median(run.main / run.seconds for run in sub)
        self.main_waited = median(us(per_message(run, "main_wait")) for run in sub)
        self.workers = median(us(run.workers / run.pushes) for run in sub)
        self.worker_threads = max(len(run.worker_names) for run in sub)
        self.workers_busy = median(run.workers / run.seconds for run in sub)
        self.other_threads = sum(run.other_threads for run in sub + plain)
        self.sink = median(us(run.sink_cpu / run.pushes) for run in sub)
        self.crypto_us = 1e6 / crypto["ours"]["prepare_per_sec_1"]
        half = result["paced"][0.5]
        self.half_rate = half.push_rate
        self.latency = (ms(median(half.latencies)), ms(percentile(half.latencies, 99)))
        self.pings = {}
        for key, _ in PING_CONDITIONS:
            rtts, messages, pushes = result["pings"][key]
            self.pings[key] = (ms(median(rtts)), ms(percentile(rtts, 99)), messages, pushes, len(rtts))
        costs, hooks, allocated = result["probe"]
        self.probe = median(costs)
        self.probe_spread = (min(costs), max(costs))
        self.probe_hook = median(hooks)
        self.probe_allocated = median(allocated)
        self.verified = result["verified"]
        self.lua_errors = result["lua_errors"]


def render(figures):
    crypto = figures["crypto"]
    versions = [Version(result, crypto) for result in figures["e2e"]]
    names = [f"Prosody {figures['versions'][v.r['version']]}" for v in versions]
    out = []
    add = out.append

    # -- cryptography -------------------------------------------------------------------------
    native = crypto["ours"]
    one = native["prepare_per_sec_1"]
    python_rate, node_rate, limit = crypto["pywebpush"], crypto["node"], crypto["limit"]["per_sec"]
    fastest_peer = max(python_rate, node_rate)
    add("")
    add(f"Per-push cryptography, one core (best of {crypto['repeats']} interleaved runs each)")
    add("")
    add("| who | pushes/s per core | µs per push | relative to mod_web_push |")
    add("|---|---:|---:|---:|")
    for name, rate in (
        ("mod_web_push (encrypt + cached VAPID token)", one),
        ("pywebpush 2.5.0 (encrypt + VAPID sign)", python_rate),
        ("web-push 3.6.7 for Node (encrypt + VAPID sign)", node_rate),
        ("machine limit: openssl speed ECDH + ECDSA sign (for key generation) + AES-GCM, via EVP", limit),
    ):
        add(f"| {name} | {rate:,.0f} | {1e6 / rate:.1f} | {rate / one:.2f}x |")
    add("")
    add(f"- An uncached VAPID signature costs {1e6 / native['vapid_sign_per_sec']:.0f} µs; tokens are cached "
        "per push service, so a push pays it about once in 6 hours.")
    add(f"- Over {native['cores']} cores: {native['prepare_per_sec_all']:,.0f} pushes/s "
        f"({native['prepare_per_sec_all'] / one:.2f}x one core). The sender alone (no Prosody) to a push "
        f"service on loopback, HTTP included: {native['sender_per_sec_1']:,.0f}/s with 1 worker, "
        f"{native['sender_per_sec_all']:,.0f}/s with {native['cores']}.")

    # -- end to end ---------------------------------------------------------------------------
    accounts = versions[0].accounts
    add("")
    add(f"End to end: {accounts} offline accounts with a subscription each (made with the enable IQ) get one "
        "chat message each from one slixmpp client, as fast as Prosody takes them; the module pushes to a "
        "push service on loopback that answers 201 at once. Baseline: the same messages to "
        f"{accounts} accounts with no subscription. Internal storage, MAM and offline storage on, "
        "web_push_workers = 2. Medians of 6 batches (4 with the module not loaded).")
    add("")
    add("| measure | " + " | ".join(names) + " |")
    add("|---|" + "---:|" * len(versions) + "")

    def row(label, cell):
        add(f"| {label} | " + " | ".join(cell(v) for v in versions) + " |")

    row("pushes delivered per second (first message sent to last push received)", lambda v: f"{v.push_rate:,.0f}")
    row("messages/s Prosody handles: module not loaded", lambda v: f"{v.rate_unloaded:,.0f}")
    row("messages/s Prosody handles: module loaded, no subscription", lambda v: f"{v.rate_plain:,.0f}")
    row("messages/s Prosody handles: module loaded, each message a push", lambda v: f"{v.rate_sub:,.0f}")
    row("latency message sent → push received, at half that rate: median / p99",
        lambda v: f"{v.latency[0]:.1f} / {v.latency[1]:.1f} ms ({v.half_rate:,.0f}/s)")
    row("Prosody's main thread per message: module not loaded", lambda v: f"{v.main_unloaded:.0f} µs")
    row("Prosody's main thread per message: no subscription (again after the unloaded runs)",
        lambda v: f"{v.main_plain:.0f} µs ({v.main_plain_again:.0f} µs)")
    row("Prosody's main thread per message: each message a push", lambda v: f"{v.main_sub:.0f} µs")
    row("**µs on Prosody's thread per push** (push minus no subscription; from utime+stime)",
        lambda v: f"**{v.per_push:.0f} µs** ({v.per_push_ticks:.0f} µs)")
    row("**… the module alone** (its hook called with ready-made messages, results and garbage included; "
        "median, lowest–highest of 7)",
        lambda v: f"**{v.probe:.0f} µs** ({v.probe_spread[0]:.0f}–{v.probe_spread[1]:.0f})")
    row("… of which the hook (wall clock); Lua memory it allocates per push",
        lambda v: f"{v.probe_hook:.0f} µs; {v.probe_allocated} bytes")
    row("Prosody's main thread busy from first message to last push (100% = saturated); waiting for a core per message",
        lambda v: f"{v.main_busy:.0%}; {v.main_waited:.0f} µs")
    row("worker threads (web_push-N) per push: encrypt + sign + HTTP", lambda v: f"{v.workers:.0f} µs")
    row("… of which the cryptography (cargo bench, one core)",
        lambda v: f"{v.crypto_us:.0f} µs ({v.crypto_us / v.workers:.0%})")
    row("worker threads busy during the pushes (of one core, all workers)", lambda v: f"{v.workers_busy:.0%}")
    row("CPU of Prosody's other threads (neither main nor web_push-N), all batches",
        lambda v: f"{v.other_threads * 1e3:.1f} ms")
    row("push service (our sink) per push", lambda v: f"{v.sink:.0f} µs")
    row("pushes verified and decrypted with http_ece + PyJWT", lambda v: f"{v.verified} of {v.verified}")

    add("")
    add("XMPP ping (XEP-0199) round trips from another slixmpp client, in its own process, while the "
        "sender keeps Prosody busy: median / p99 (messages/s, pushes/s while the pings ran).")
    add("")
    add("| load | " + " | ".join(f"{n} ({v.pings['idle'][4]} pings each)" for n, v in zip(names, versions)) + " |")
    add("|---|" + "---:|" * len(versions) + "")
    for key, label in PING_CONDITIONS:
        def ping_cell(v, key=key):
            med, p99, messages, pushes, _ = v.pings[key]
            rates = f" ({messages:,.0f}/s, {pushes:,.0f}/s)" if messages else ""
            return f"{med:.2f} / {p99:.1f} ms{rates}"
        row(label, ping_cell)
    row("ratio, messages at full speed with pushes / idle (median)",
        lambda v: f"{v.pings['flood_push'][0] / v.pings['idle'][0]:.0f}x")
    row("ratio, with pushes / same messages without (median): full speed; half",
        lambda v: f"{v.pings['flood_push'][0] / v.pings['flood_plain'][0]:.1f}x; "
                  f"{v.pings['half_push'][0] / v.pings['half_plain'][0]:.1f}x")

    sweep = figures["e2e"][0].get("sweep")
    if sweep:
        add("")
        add(f"Native workers ({names[0]}): pushes/s at full speed, and latency message → push at paced loads "
            "(fractions of that worker count's full speed): median / p99")
        add("")
        fractions = sorted(next(iter(sweep.values()))["paced"])
        add("| web_push_workers | pushes/s | " + " | ".join(f"at {f:.0%}" for f in fractions) + " |")
        add("|---:|---:|" + "---:|" * len(fractions))
        for workers, data in sorted(sweep.items()):
            top = max(run.push_rate for run in data["bursts"])
            cells = [f"{ms(median(run.latencies)):.1f} / {ms(percentile(run.latencies, 99)):.1f} ms"
                     for _, run in sorted(data["paced"].items())]
            add(f"| {workers} | {top:,.0f} | " + " | ".join(cells) + " |")

    # -- targets --------------------------------------------------------------------------
    v = versions[0]
    crypto_all = native["prepare_per_sec_all"]
    ping_ratio = v.pings["flood_push"][0] / v.pings["idle"][0]
    half_ratio = v.pings["half_push"][0] / v.pings["idle"][0]
    targets = [
        ("encryption + signing ≥ 3x the fastest peer per core",
         f"{one / fastest_peer:.2f}x", one / fastest_peer >= 3.0),
        ("≥ 90% of the machine's limit for that work",
         f"{one / limit:.0%} (over 100%: openssl speed pays EVP's overhead, which we skip; see bench/FINDINGS.md)"
         if one > limit else f"{one / limit:.0%}", one / limit >= 0.9),
        ("workers use both cores: ≥ 1.8x one core", f"{crypto_all / one:.2f}x", crypto_all / one >= 1.8),
        ("end-to-end throughput bounded by the crypto limit, not by Lua or HTTP",
         f"{v.push_rate:,.0f} pushes/s = {v.push_rate / crypto_all:.0%} of the crypto limit "
         f"({crypto_all:,.0f}/s); Prosody's main thread {v.main_busy:.0%} busy, workers {v.workers_busy:.0%}; "
         f"Prosody alone handles {v.rate_unloaded:,.0f} messages/s", v.push_rate >= 0.9 * crypto_all),
        ("Prosody's thread under 20 µs per push",
         f"{v.per_push:.0f} µs end to end, {v.probe:.0f} µs the module alone", max(v.per_push, v.probe) < 20),
        ("ping under load within 2x of idle",
         f"{ping_ratio:.0f}x with messages at full speed ({half_ratio:.1f}x at half load)", ping_ratio <= 2),
    ]
    add("")
    add(f"Targets (issue 6; end-to-end figures from {names[0]})")
    add("")
    add("| target | figure | met |")
    add("|---|---|---|")
    for name, figure, met in targets:
        add(f"| {name} | {figure} | {'yes' if met else '**no**'} |")

    # -- the run itself -------------------------------------------------------------------
    add("")
    others = "; ".join(f"{n}: {r['other_load']:.2f}" for n, r in zip(names, figures["e2e"]))
    add(f"- Other processes on the machine (cores, on average): cryptography part {crypto['other_load']:.2f}; "
        f"end to end, {others}. Figures measured while they used more than about 0.1 are disturbed.")
    errors = sum(len(v.lua_errors) for v in versions)
    add(f"- Lua errors in Prosody's logs: {errors}.")
    return "\n".join(out)


def plain(value):
    """A JSON-friendly copy of the figures (Runs become dicts, key material is never in them)."""
    if dataclasses.is_dataclass(value):
        fields = dataclasses.asdict(value)
        fields.pop("kept", None)
        fields["worker_names"] = sorted(fields["worker_names"])
        return plain(fields)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
