"""CPU time of processes and of each thread, from /proc.

Per thread, /proc/<pid>/task/<tid>/schedstat's first field is the time it ran, in nanoseconds
(the scheduler's own sum_exec_runtime); /proc/.../stat's utime + stime is the same in clock ticks
(10 ms), too coarse to see a few µs per push over a few hundred pushes, so it is read only as a
cross-check."""

import os

TICK = 1.0 / os.sysconf("SC_CLK_TCK")


def _read(path):
    with open(path) as f:
        return f.read()


def _ticks(stat_text):
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat_text.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def threads(pid):
    """{tid: (name, seconds run per schedstat, seconds per utime+stime, seconds spent waiting
    for a core)} of every thread of pid."""
    found = {}
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            name = _read(f"{base}/{tid}/comm").strip()
            ran, waited = (int(v) / 1e9 for v in _read(f"{base}/{tid}/schedstat").split()[:2])
            ticks = _ticks(_read(f"{base}/{tid}/stat")) * TICK
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        found[int(tid)] = (name, ran, ticks, waited)
    return found


def process_seconds(pid):
    """CPU seconds of a whole process (all its threads, living and ended), per schedstat."""
    return int(_read(f"/proc/{pid}/schedstat").split()[0]) / 1e9


class Split:
    """CPU used between two snapshots of one process, split into its main thread (tid == pid,
    where Prosody runs all its Lua), the module's workers (threads named web_push-N) and any
    other thread."""

    def __init__(self, pid, before, after):
        self.main = self.main_ticks = self.main_wait = self.workers = self.other = 0.0
        self.worker_names = set()
        for tid, (name, ran, ticks, waited) in after.items():
            ran0, ticks0, waited0 = before[tid][1:] if tid in before else (0.0, 0.0, 0.0)
            if tid == pid:
                self.main, self.main_ticks, self.main_wait = ran - ran0, ticks - ticks0, waited - waited0
            elif name.startswith("web_push-"):
                self.workers += ran - ran0
                self.worker_names.add(name)
            else:
                self.other += ran - ran0


def machine_busy_seconds():
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    fields = [int(v) for v in _read("/proc/stat").splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) * TICK
