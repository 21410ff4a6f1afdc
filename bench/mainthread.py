"""Prosody's main thread per push, two ways (both also run by `make bench`'s end-to-end part):

- probe: the module alone. Its own message/offline/handle handler is called from Prosody's admin
  console with ready-made offline chat messages, and the main thread's CPU (schedstat) is taken
  until every push is in and its result handled, minus a dry run that makes the same messages
  without calling the hook. Includes `sender:push`, result handling and the garbage collection
  all that causes under Prosody's own collector settings.
- profile: perf samples of the main thread (tid = pid) over batches of messages to subscribed
  accounts, then as many to accounts without a subscription; the difference per message, by
  library and symbol. Debian's lua5.4 is stripped, so the interpreter's internals (and its
  garbage collector) show as addresses.

    bench/run --profile 10 --versions 13     # probe, then a profile over 10 + 10 batches

Needs perf (linux-perf) for the profile part. Sampling at 4 kHz: rough figures.
"""

import asyncio
import os
import subprocess
import tempfile
import time

import procstat

ALLOC_SYMBOLS = {"malloc", "free", "realloc", "calloc", "_int_malloc", "_int_free", "_int_realloc",
                 "malloc_consolidate", "cfree", "__libc_malloc", "__libc_free", "__libc_realloc",
                 "unlink_chunk", "tcache_get", "_int_free_merge_chunk", "_int_free_create_chunk",
                 "_int_free_maybe_consolidate"}


def category(dso, symbol):
    dso = os.path.basename(dso)
    if symbol.split(".")[0].split("@")[0] in ALLOC_SYMBOLS:
        return "malloc/free"
    if "web_push" in dso:
        return "web_push.so"
    if dso.startswith("liblua") or dso.startswith("lua"):
        return "Lua (interpreter, tables, strings)"
    if dso in ("[kernel.kallsyms]", "[kernel]") or symbol.startswith(("__x64_sys", "entry_SYSCALL")):
        return "kernel"
    if dso.startswith("libc"):
        return "libc (other)"
    return "other (" + dso + ")"


def samples_by_category(data):
    """{category: samples} and {(dso, symbol): samples} from a perf.data file (self time)."""
    out = subprocess.run(
        ["perf", "report", "-i", data, "--no-children", "--stdio", "--sort", "dso,sym", "-F", "sample,dso,sym",
         "--percent-limit", "0"],
        capture_output=True, text=True, check=True).stdout
    found, symbols = {}, {}
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        count, dso, sym = int(parts[0]), parts[1], parts[2]
        sym = sym.split("] ", 1)[-1].strip()
        key = category(dso, sym)
        found[key] = found.get(key, 0) + count
        symbols[(os.path.basename(dso), sym)] = symbols.get((os.path.basename(dso), sym), 0) + count
    return found, symbols


async def record(server, users, batches, expect_pushes, workdir, name):
    # Not the first batches after a start: those load the accounts' stores, which a server that
    # has been running a while has done long ago.
    for _ in range(2):
        await server.batch(users, expect_pushes=expect_pushes)
    data = os.path.join(workdir, f"{name}.perf.data")
    before = procstat.threads(server.pid)
    perf = subprocess.Popen(["perf", "record", "-q", "-F", "4000", "-t", str(server.pid), "-o", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.sleep(0.5)
    messages = 0
    for _ in range(batches):
        run = server.check(await server.batch(users, expect_pushes=expect_pushes), len(users) if expect_pushes else 0)
        messages += run.messages
    perf.send_signal(2)
    perf.wait(timeout=60)
    after = procstat.threads(server.pid)
    split = procstat.Split(server.pid, before, after)
    return (*samples_by_category(data), split.main, messages)


async def profile(server, batches, log):
    workdir = tempfile.mkdtemp(prefix="profile.", dir=server.workdir)
    rows, symbol_rows = {}, {}
    for name, users, pushes in (("push", server.subscribed, True), ("plain", server.plain, False)):
        samples, symbols, cpu, messages = await record(server, users, batches, pushes, workdir, name)
        total = sum(samples.values()) or 1
        rows[name] = {key: cpu * count / total / messages * 1e6 for key, count in samples.items()}
        rows[name]["(all)"] = cpu / messages * 1e6
        symbol_rows[name] = {f"{sym} ({dso})": cpu * count / total / messages * 1e6 for (dso, sym), count in symbols.items()}
        log(f"profile: {name} batches recorded")
    return rows, symbol_rows


# Calls the module's own message/offline/handle handler (found among the host's handlers by its
# source file) with ready-made offline chat messages: the module's work only, none of Prosody's.
# {call} is the handler call, or nothing for the dry run that measures making the messages and
# the console's own work.
PROBE = """> local st = require "util.stanza"; local host = "{host}"; local monotonic = require "util.time".monotonic;
local handler; for h in pairs(prosody.hosts[host].events._event_map["message/offline/handle"]) do
if debug.getinfo(h, "S").source:find("mod_web_push", 1, true) then handler = h end end
local events = {{}}; for i = 1, {count} do local user = "{prefix}" .. i;
events[i] = {{ username = user, stanza = st.message({{ to = user .. "@" .. host, type = "chat", id = "p" .. i }})
:text_tag("body", "bench message " .. i):tag("stanza-id", {{ xmlns = "urn:xmpp:sid:0", by = user .. "@" .. host,
id = "{tag}" .. i }}):up() }} end
local kb, t = collectgarbage("count"), monotonic(); for i = 1, {count} do {call} end
return ("took %.3f allocated %d"):format((monotonic() - t) * 1e6 / {count},
math.floor((collectgarbage("count") - kb) * 1024 / {count}))"""


async def probe_window(server, code, pushes):
    """Prosody's main-thread CPU from the console command until its pushes are in and the
    results handled, and what the command printed."""
    server.sink.take()
    before = procstat.threads(server.pid)
    out = server.prosody.shell(code, timeout=120)
    if pushes:
        await server.sink.wait_count(pushes, timeout=60)
    await asyncio.sleep(0.3)
    cpu = procstat.Split(server.pid, before, procstat.threads(server.pid)).main
    arrivals, _, _ = server.sink.take()
    if len(arrivals) != pushes:
        raise RuntimeError(f"probe: {len(arrivals)} pushes, expected {pushes}")
    took, allocated = out.split("took")[-1].split()[0], out.split("allocated")[-1].split()[0]
    return cpu, float(took), int(allocated)


async def probe(server, rounds, log):
    """µs of Prosody's main thread per push for the module alone: its hook, `sender:push`, the
    result handling and the garbage all that leaves, without Prosody's message routing and
    storage: each round's CPU minus that of a dry round (same messages made, no hook called).
    Also the hook's own time (wall clock, to the return of the last call) and the Lua memory
    it allocates per push."""
    from xmppload import HOST
    count = len(server.subscribed)
    prefix = server.subscribed[0].rstrip("0123456789")
    costs, hooks, allocated = [], [], []
    for index in range(rounds):
        cpu = {}
        for call in ("", "handler(events[i])"):
            code = PROBE.format(host=HOST, count=count, prefix=prefix, tag=f"probe{index}-", call=call)
            cpu[call], took, alloc = await probe_window(server, code, count if call else 0)
        costs.append((cpu["handler(events[i])"] - cpu[""]) / count * 1e6)
        hooks.append(took)
        allocated.append(alloc)
    log(f"probe: {', '.join(f'{c:.1f}' for c in costs)} µs per push")
    return costs, hooks, allocated


def median(values):
    return sorted(values)[len(values) // 2]


def table(rows, limit=None):
    keys = set(rows["push"]) | set(rows["plain"])
    keys = sorted(keys, key=lambda k: -abs(rows["push"].get(k, 0) - rows["plain"].get(k, 0)))[:limit]
    lines = ["| on Prosody's main thread, µs per message | each a push | no subscription | difference |",
             "|---|---:|---:|---:|"]
    for key in keys:
        a, b = rows["push"].get(key, 0.0), rows["plain"].get(key, 0.0)
        lines.append(f"| {key} | {a:.1f} | {b:.1f} | {a - b:+.1f} |")
    return "\n".join(lines)


async def run(version, workdir, sink, pinger, accounts, batches, log):
    import e2e
    server = e2e.Server(version, workdir, sink, pinger, accounts, log)
    try:
        await server.setup()
        await server.start(workers=2)
        started = time.monotonic()
        costs, hooks, allocated = await probe(server, 7, log)
        rows, symbol_rows = await profile(server, batches, log)
        log(f"profile took {time.monotonic() - started:.0f} s")
        return (f"The module alone (its hook called with {len(server.subscribed)} ready-made messages, "
                f"results handled, garbage collected), µs of Prosody's main thread per push: median "
                f"{median(costs):.1f} (rounds: {', '.join(f'{c:.1f}' for c in sorted(costs))}); of which the "
                f"hook itself (wall clock) {median(hooks):.1f}; Lua memory the hook allocates per push: "
                f"{median(allocated)} bytes\n\n"
                + table(rows) + "\n\nThe 25 symbols that differ most:\n\n" + table(symbol_rows, 25))
    finally:
        await server.stop()
