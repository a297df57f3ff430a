"""Where a fit's peak memory goes: RSS sampled during a fit, with the code that raised it.

Why this file exists: issue 15 found peak RSS 0.25-1.3 GB over the memory figure ``dcace.cost``
prints.  ``Sampler`` is a thread reading /proc/self/statm every 20 ms; whenever RSS passes its
previous maximum by 16 MiB it records the fit thread's innermost dcace frames.
``benchmarks/many_elements.py fit`` runs it during every fit and stores the steps ("rss_steps") in
its JSON; this script prints them (the last one is where the peak is):

    python benchmarks/memory_profile.py W/MODEL.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


class Sampler(threading.Thread):
    """Records (seconds, RSS MiB, innermost dcace frames of the watched thread) at every new maximum."""

    def __init__(self, thread_id, step_mib=16, dt=0.02):
        super().__init__(daemon=True)
        self.tid, self.step, self.dt = thread_id, step_mib * 2**20, dt
        self.events, self.peak, self.stop = [], 0, False
        self.t0 = time.perf_counter()

    def where(self):
        frame = sys._current_frames().get(self.tid)
        stack = traceback.extract_stack(frame) if frame is not None else []
        mine = [f"{Path(s.filename).name}:{s.lineno} {s.name}" for s in stack if "dcace" in s.filename]
        return mine[-4:]

    def run(self):
        while not self.stop:
            r = rss_bytes()
            if r > self.peak + self.step:
                self.events.append((time.perf_counter() - self.t0, r / 2**20, self.where()))
            self.peak = max(self.peak, r)
            time.sleep(self.dt)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("json", help="a result file of benchmarks/many_elements.py fit")
    args = p.parse_args(argv)
    r = json.loads(Path(args.json).read_text())
    print(f"{r['model']}: K = {r['K']}, RSS before the fit {r['rss_before_fit_mib']:.0f} MiB, budgeted "
          f"{r['memory_normal_eq_mib']:.0f} MiB, peak {r['peak_rss_mib']:.0f} MiB")
    for t, rss, where in r["rss_steps"]:
        print(f"  {t:7.1f} s {rss:7.0f} MiB  " + " < ".join(reversed(where)))


if __name__ == "__main__":
    main()
