# gst_mm developer commands. Every target creates or reuses the project's
# virtual environment (.venv) first; the first setup builds mmcv (~10-25 min).
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test demo lint bench clean

setup:
	@bash tools/setup_env.sh

# pytest exits 5 when it collected no test: that is a failure here, said aloud.
test: setup
	@rc=0; $(PY) -m pytest tests -q -p no:cacheprovider $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

demo: setup
	$(PY) tools/demo.py

lint: setup
	$(VENV)/bin/ruff check gst_mm tools tests configs

bench: setup
	$(PY) tools/benchmark/splatting.py
	$(PY) tools/benchmark/losses.py
	$(PY) tools/benchmark/data_pipeline.py
	$(PY) tools/benchmark/pose_step.py
	$(PY) tools/benchmark/pose.py
	$(PY) tools/benchmark/counting.py

clean:
	rm -rf work_dirs .pytest_cache .ruff_cache
