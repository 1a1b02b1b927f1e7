# Two entry points for a fresh machine; each does its own set-up.
#   make quickstart   fine-tune the built-in tiny model on the bundled data (offline)
#   make test         run the test suite (offline, mocked clouds)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= train,serve,aws,azure,gcp,dev

.PHONY: quickstart test golden setup lint clean

# The stamp is rebuilt when the dependency list changes.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

setup: $(VENV)/.installed

quickstart: setup
	$(BIN)/recipe run recipes/catalog/quickstart.yaml --provider local --wait

test: setup
	$(BIN)/python -m pytest -q

# Rewrite tests/golden/ from the current plans (training jobs and endpoints); review
# with `git diff tests/golden`.
golden: setup
	$(BIN)/python -m pytest -q tests/test_plan.py tests/test_endpoint_aws.py \
		tests/test_endpoint_azure.py tests/test_endpoint_gcp.py --update-golden

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache
