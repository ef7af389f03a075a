# Treu — `make run` serves the demo on http://127.0.0.1:8000, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install run test lint bench texts clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Treu needs Python >= 3.11 (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

run: install
	$(BIN)/treu migrate
	$(BIN)/treu demo --if-empty
	TREU_ENV=$${TREU_ENV:-development} $(BIN)/treu serve

# The suite runs once, each test on one of four clocks: today, one year ahead, the leap-day
# evening in Berlin, and half an hour into a new year in Berlin, when UTC is still in the old
# year (tests/clock.py). Which test meets which clock changes every week (--clocks, salted
# with the ISO week), so no test depends on the day it runs and the suite stays one pass.
PYTEST := $(BIN)/python -m pytest -n 2 --dist loadgroup
LEAP_EVENING := 2028-02-29T23:30 Europe/Berlin
NEW_YEAR := 2027-01-01T00:30 Europe/Berlin

test: install lint
	$(PYTEST) --clocks="now;+1y;$(LEAP_EVENING);$(NEW_YEAR)"

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m benchmarks.run

# Texts for members, cashiers and staff (src/treu/kit/text.py): collect the English texts from
# the code and the web pages' templates (babel.cfg) into the template, merge it into every language's catalogue, then translate what is
# new or marked fuzzy (tests/kit/test_texts.py fails until German is complete). The .po files
# are read at run time: nothing to compile.
LOCALE := src/treu/locale
texts: install
	$(BIN)/pybabel extract -F babel.cfg --no-wrap --add-location=file --project=Treu \
		--copyright-holder="Treu contributors" \
		-k translate:2 -k translate_plural:2,3 -c TRANSLATORS: -o $(LOCALE)/treu.pot src/treu
	$(BIN)/pybabel update --no-wrap --ignore-pot-creation-date --ignore-obsolete -D treu \
		-i $(LOCALE)/treu.pot -d $(LOCALE)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
