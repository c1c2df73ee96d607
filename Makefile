# The two commands a user needs (both set up the environment first, idempotently):
#   make pipeline   run the main job on the embedded default (local Spark, ./lakehouse, generated data)
#   make test       run the test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ecomlake-env-$(shell cat constraints.txt setup.py | sha1sum | cut -c1-12)
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: env pipeline test bench-etl clean-lake

env: $(STAMP)

$(STAMP): constraints.txt setup.py
	bash scripts/setup_env.sh $(VENV)
	touch $@

pipeline: env
	./spark-submit.sh pipeline $(ARGS)

test: env
	$(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)

bench-etl: env
	$(PY) benchmarks/etl.py $(ARGS)

clean-lake:
	rm -rf lakehouse data
