"""The lab's plans driven by Locust master and worker processes, histories merged and checked.

Importing this package never imports locust (which monkey-patches the standard
library with gevent): the lab starts Locust as separate processes running
``locustfile.py``, the one module here that imports it.

    _protocol    the spec and result files, the custom messages, the fault variables
    _clocks      worker clock offsets by round trips, with their uncertainty
    _merge       per-worker histories onto the master's clock, widened; overlap figures
    _catalog     the scenarios Locust can drive: plan and expectations
    _swarm       the master and worker processes, started, bounded and reaped
    _experiment  run_locust: one scenario through Locust, as a Result
    locustfile   the Locust side (master conductor, plan users); Locust processes only
"""

from __future__ import annotations

from experiments.locust._catalog import LOCUST_DEFAULTS, LOCUST_RANGES, LOCUST_SCENARIOS, driven
from experiments.locust._clocks import ClockEstimate, combine, estimate
from experiments.locust._experiment import locust_stats, run_locust, save_locust_reports
from experiments.locust._merge import PLACEMENTS, WorkerReport, merge, peak_overlap
from experiments.locust._protocol import DIE_ENV, SERIAL_ENV, SKEW_ENV, STEP_ENV
from experiments.locust._swarm import SwarmError, SwarmRun, join_swarm, parse_hostport, run_swarm

__all__ = [
    "DIE_ENV",
    "LOCUST_DEFAULTS",
    "LOCUST_RANGES",
    "LOCUST_SCENARIOS",
    "PLACEMENTS",
    "SERIAL_ENV",
    "SKEW_ENV",
    "STEP_ENV",
    "ClockEstimate",
    "SwarmError",
    "SwarmRun",
    "WorkerReport",
    "combine",
    "driven",
    "estimate",
    "join_swarm",
    "locust_stats",
    "merge",
    "parse_hostport",
    "peak_overlap",
    "run_locust",
    "run_swarm",
    "save_locust_reports",
]
