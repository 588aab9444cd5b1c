"""The profiling lab: providers × precisions side by side, where the nodes ran, and a run log.

* :func:`profile` runs a text on every provider × precision (alternating, after warm-up) and
  returns a :class:`ProfileReport` with figures (:mod:`.plots`).
* :func:`audit` shows which graph nodes ran on which execution provider.
* :func:`profile_ops` breaks the first chunk down stage by stage and op by op.
* :func:`runs` lists the run log (SQLite in the user data dir); :func:`compare` sets one figure
  side by side across machines.
"""

from .audit import PlacementReport, PlacementWarning, audit
from .ops import OpRow, OpsProfile, profile_ops
from .runlog import RunLog, RunLogError, compare, runs
from .runner import Absent, Cell, ProfileReport, profile

__all__ = [
    "Absent", "Cell", "OpRow", "OpsProfile", "PlacementReport", "PlacementWarning",
    "ProfileReport", "RunLog", "RunLogError", "audit", "compare", "profile", "profile_ops",
    "runs",
]
