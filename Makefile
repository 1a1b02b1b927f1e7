# Two entry points for a fresh machine; each does its own set-up.
#   make quickstart   fine-tune the built-in tiny model on the bundled data (offline)
#   make test         run the test suite (offline, mocked clouds)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= train,serve,cost,aws,azure,gcp,dev

.PHONY: quickstart test golden setup tools lint clean

# The stamp is rebuilt when the dependency list changes.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

setup: $(VENV)/.installed

# Tools some tests drive, outside our venv: Debian's Chromium (the HTML cost report is
# checked in a real headless browser) and the FinOps Foundation's focus-validator (the
# FOCUS export is checked by it), in a venv of its own because it pins pandas<3 and
# numpy<2; multimethod<2 and pyarrow<18 are the last releases its pandera/numpy accept.
# Best effort: without them those tests skip and say why.
FOCUS_VENV ?= .venv-focus
CHECKOV_VENV ?= .venv-checkov
tools: $(FOCUS_VENV)/.installed $(CHECKOV_VENV)/.installed
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		(apt-get install -y -q chromium >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
		echo "chromium could not be installed: the HTML report's browser test will skip"

$(FOCUS_VENV)/.installed:
	@($(PYTHON) -m venv $(FOCUS_VENV) && \
	  $(FOCUS_VENV)/bin/python -m pip install --quiet --upgrade pip && \
	  $(FOCUS_VENV)/bin/python -m pip install --quiet 'focus-validator==1.0.0' \
		'multimethod<2' 'pyarrow<18' && touch $@) || \
		echo "focus-validator could not be installed: the FOCUS export's validator test will skip"

# checkov scans infra/ (CloudFormation, ARM, Terraform); its own pins clash with ours.
$(CHECKOV_VENV)/.installed:
	@($(PYTHON) -m venv $(CHECKOV_VENV) && \
	  $(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip && \
	  $(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov>=3.2,<4' && touch $@) || \
		echo "checkov could not be installed: the infra templates' scan test will skip"

quickstart: setup
	$(BIN)/recipe run recipes/catalog/quickstart.yaml --provider local --wait

test: setup tools
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
	rm -rf $(VENV) $(FOCUS_VENV) $(CHECKOV_VENV) runs .pytest_cache
