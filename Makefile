# Two commands a fresh machine needs (Python 3.11 + pip): `make run` and `make test`.
VENV := .venv
STAMP := $(VENV)/.sparkle-installed

.PHONY: setup run test ui clean
setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml scripts/setup.sh scripts/footage.sh sparkle_model/tvshim.py sparkle_model/sam2_build.py
	scripts/setup.sh $(VENV)
	touch $(STAMP)

run: $(STAMP)            ## materialize the whole asset graph on the bundled footage
	$(VENV)/bin/sparkle run

test: $(STAMP)           ## the test suite (what CI runs)
	$(VENV)/bin/python -m pytest -q

ui: $(STAMP)             ## the Dagster UI on http://127.0.0.1:3000
	$(VENV)/bin/sparkle ui

clean:                   ## remove outputs (keeps the virtual environment)
	rm -rf .sparkle
