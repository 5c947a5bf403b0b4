"""Test configuration: quick mode on for everything, notebooks included.

nbval starts each notebook's kernel from this process, so the kernel inherits the
variable set here; a notebook run by hand keeps its full-size default.
"""
import os

os.environ["FCOS_QUICK"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
# Keep tqdm bars out of compared outputs and logs.
os.environ.setdefault("TQDM_DISABLE", "1")
