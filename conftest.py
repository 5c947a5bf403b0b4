"""Test configuration: quick mode on for everything, notebooks included.

nbval starts each notebook's kernel from this process, so the kernel inherits the
variable set here; a notebook run by hand keeps its full-size default.
"""
import os

import pytest

os.environ["FCOS_QUICK"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
# Keep tqdm bars out of compared outputs and logs.
os.environ.setdefault("TQDM_DISABLE", "1")
# Under pytest-xdist (`make test`: two processes on two cores), one thread a process, for the
# notebooks' kernels and the commands it starts too: OpenMP threads that outnumber the cores
# spin against each other (a 15-second training took 300 s so).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

# The student copies differ from the solution notebooks only where the exercises are: nbval
# runs the solutions, and tests/test_student_runs.py runs the cells of the copies that differ
# (and what those need), instead of every cell a second time.
collect_ignore_glob = ["notebooks/student/*.ipynb"]

# `make test` runs the tests on two processes (pytest-xdist). Tests that share files or a
# server run in one process, in order: the notebooks (05 saves the student's pieces that 06
# imports, 06 trains the run that 07 reads) with the student copies (which run the same cells
# on the same folders), and the browser tests (one JupyterLab). Every other test is sent on
# its own to whichever process is free. (xdist's own --dist loadgroup cannot do this under
# pytest 9: it renames the tests' node ids, which pytest 9 no longer reads.)
GROUPS = {"notebooks": ("notebooks/", "tests/test_student_runs.py"),
          "browser": ("tests/test_browser.py",)}

try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:                      # without xdist: one process, nothing to schedule
    LoadScopeScheduling = None

if LoadScopeScheduling is not None:
    class GroupScheduling(LoadScopeScheduling):
        """xdist's scope scheduling with :data:`GROUPS` as the only scopes of many tests (the
        largest is sent first, so that the longest chain starts at once)."""

        def _split_scope(self, nodeid: str) -> str:
            return next((group for group, paths in GROUPS.items() if nodeid.startswith(paths)),
                        nodeid)

    @pytest.hookimpl(optionalhook=True)        # (-p no:xdist leaves the hook unknown)
    def pytest_xdist_make_scheduler(config, log):
        """Schedule by :class:`GroupScheduling` (``pytest -n 2``)."""
        return GroupScheduling(config, log)
