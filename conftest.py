"""Test configuration: quick mode on for everything, notebooks included.

nbval starts each notebook's kernel from this process, so the kernel inherits the
variable set here; a notebook run by hand keeps its full-size default.
"""
import os

os.environ["FCOS_QUICK"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
# Keep tqdm bars out of compared outputs and logs.
os.environ.setdefault("TQDM_DISABLE", "1")

# The student copies differ from the solution notebooks only where the exercises are: nbval
# runs the solutions, and tests/test_student_runs.py runs the cells of the copies that differ
# (and what those need), instead of every cell a second time.
collect_ignore_glob = ["notebooks/student/*.ipynb"]
