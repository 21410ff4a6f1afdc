"""doc/bench.png: what bounds end-to-end throughput, in three panels.

1. pushes delivered per second against messages offered per second, for 1, 2 and 4 native
   workers, with the rate Prosody handles messages at without the module;
2. p99 (and median) latency from message sent to push received against the offered load;
3. where the CPU time of one message goes: Prosody's main thread (Prosody itself, the module
   without and with a push) and the module's worker threads (cryptography, the rest: HTTP)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from report import Version, median, ms, percentile  # noqa: E402

COLOURS = {1: "#4c72b0", 2: "#dd8452", 4: "#55a868"}


def draw(figures, path):
    crypto = figures["crypto"]
    result = figures["e2e"][0]
    version = Version(result, crypto)
    name = f"Prosody {figures['versions'][result['version']]}"
    sweep = result["sweep"]

    fig, (rate_ax, latency_ax, cpu_ax) = plt.subplots(1, 3, figsize=(16, 5.2), dpi=110,
                                                      gridspec_kw={"width_ratios": [1.1, 1.1, 0.9]})
    fig.suptitle(f"mod_web_push end to end on {name}, {version.accounts} offline accounts, push service on "
                 f"loopback ({crypto['ours']['cores']} cores)", fontsize=12)

    # 1: throughput against offered load
    top_offered = 0
    for workers, data in sorted(sweep.items()):
        points = sorted((run.offered, run.push_rate) for run in data["paced"].values())
        full = max(run.push_rate for run in data["bursts"])
        xs = [x for x, _ in points] + [full]
        ys = [y for _, y in points] + [full]
        top_offered = max(top_offered, max(xs))
        rate_ax.plot(xs, ys, "o-", color=COLOURS.get(workers), label=f"{workers} worker{'s' if workers > 1 else ''}")
        rate_ax.plot([full], [full], "s", color=COLOURS.get(workers), markersize=9, markerfacecolor="none")
    rate_ax.axhline(version.rate_unloaded, color="grey", linestyle="--", linewidth=1)
    rate_ax.text(top_offered * 0.02, version.rate_unloaded * 1.02,
                 f"Prosody without the module: {version.rate_unloaded:,.0f} messages/s", color="grey", fontsize=9)
    crypto_all = crypto["ours"]["prepare_per_sec_all"]
    rate_ax.text(top_offered * 0.02, version.rate_unloaded * 1.12,
                 f"crypto limit of the workers: {crypto_all:,.0f}/s (far above)", color="#8c2d04", fontsize=9)
    rate_ax.set_ylim(0, version.rate_unloaded * 1.25)
    rate_ax.set_xlim(0, top_offered * 1.08)
    rate_ax.set_xlabel("messages offered per second (squares: as fast as Prosody takes them)")
    rate_ax.set_ylabel("pushes delivered per second")
    rate_ax.set_title("Throughput: bounded by Prosody's thread")
    rate_ax.grid(alpha=0.3)
    rate_ax.legend(loc="lower right")

    # 2: latency against offered load
    for workers, data in sorted(sweep.items()):
        runs = sorted(data["paced"].values(), key=lambda run: run.offered)
        xs = [run.offered for run in runs]
        latency_ax.plot(xs, [ms(percentile(run.latencies, 99)) for run in runs], "o-",
                        color=COLOURS.get(workers), label=f"p99, {workers} worker{'s' if workers > 1 else ''}")
        latency_ax.plot(xs, [ms(median(run.latencies)) for run in runs], "x--",
                        color=COLOURS.get(workers), alpha=0.6, label=f"median, {workers}")
    latency_ax.set_ylim(bottom=0)
    latency_ax.set_xlabel("messages offered per second (paced)")
    latency_ax.set_ylabel("message sent → push received (ms)")
    latency_ax.set_title("Latency below the limit")
    latency_ax.grid(alpha=0.3)
    latency_ax.legend(fontsize=8, ncol=2)

    # 3: CPU per message. The main thread's bars are what limits: Prosody runs all its Lua there,
    # while the workers run beside it on the other cores.
    bars = ["module not\nloaded", "no\nsubscription", "with a push:\nmain thread", "with a push:\nworkers"]
    base = version.main_unloaded
    module = max(0.0, version.main_plain - version.main_unloaded)
    stacks = (
        ([base, base, base, 0], "main thread: Prosody (storage, routing, GC)", "#8da0cb"),
        ([0, module, module, 0], "main thread: module, no push", "#fc8d62"),
        ([0, 0, version.per_push, 0], "main thread: module, per push", "#e41a1c"),
        ([0, 0, 0, min(version.crypto_us, version.workers)], "workers: encryption (+ cached VAPID token)", "#66c2a5"),
        ([0, 0, 0, max(0.0, version.workers - version.crypto_us)], "workers: HTTP and the rest", "#a6d854"),
    )
    bottom = [0.0] * len(bars)
    for values, label, colour in stacks:
        cpu_ax.bar(bars, values, bottom=bottom, label=label, color=colour)
        bottom = [b + v for b, v in zip(bottom, values)]
    for x, total in enumerate(bottom):
        cpu_ax.text(x, total + max(bottom) * 0.01, f"{total:.0f}", ha="center", fontsize=9)
    cpu_ax.set_ylabel("CPU µs per message")
    cpu_ax.set_title("CPU time of one message, by thread")
    cpu_ax.tick_params(axis="x", labelsize=8)
    cpu_ax.legend(fontsize=8, loc="upper right")
    cpu_ax.set_ylim(0, max(bottom) * 1.55)
    cpu_ax.grid(alpha=0.3, axis="y")

    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    # Redraws from figures kept with `bench.py --pickle FILE`: plot.py FILE PNG
    import pickle
    import sys

    with open(sys.argv[1], "rb") as kept:
        draw(pickle.load(kept), sys.argv[2])
