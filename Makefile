# make demo | make test | make colab-test | make gpu-check | make lab | make student | make sync | make notebook NB=...   (each sets up .venv first when needed)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test colab-test gpu-check lab bench student sync notebook clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10 or newer is needed, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: setup
	$(PY) -m fcos_lib demo --out runs/demo

test: setup
	$(VENV)/bin/ruff check fcos_lib tests tools bench
	$(PY) -m pytest -n 2 --durations=25   # two processes (conftest.py schedules); the slowest tests, in every run

# Notebooks 01, 06, 07 as a Colab user runs them, in a fresh environment (tests/colab/).
colab-test: setup
	$(PY) -m pytest -m colab tests/colab -v

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

bench: setup
	$(PY) -m bench

# On a GPU: the course's recipe timed against the 15-minute goal, then notebooks 06 and 07.
gpu-check: setup
	$(PY) -m bench.gpu_check

# The set-up cells and Colab badges, from pyproject.toml's Repository address.
sync: setup
	$(PY) tools/sync_setup.py

student: sync
	$(PY) tools/make_student.py

# Re-run a notebook in full (FCOS_QUICK unset) and save it as committed: its outputs, and no
# widget state or widget views (a viewer leaves a still picture). NB=notebooks/07_evaluate.ipynb
NB ?= notebooks/07_evaluate.ipynb
notebook: setup
	$(PY) tools/strip_widget_state.py --execute $(NB)

clean:
	rm -rf runs .pytest_cache
