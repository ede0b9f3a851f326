# Two commands on a fresh machine:  `make chat`  and  `make test`.
# Both create .venv, install the CPU build of torch first, then this package.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
TESTED := $(VENV)/.installed-test

.PHONY: chat test setup test-tools bench clean

chat: $(STAMP)  ## set up, build the index if needed, open the chat on http://127.0.0.1:7860
	$(BIN)/rag serve

test: $(TESTED) test-tools  ## set up (with the ocr, test and ray extras), lint, and run the whole test suite
	$(BIN)/ruff check rag tests bench training
	$(BIN)/ruff format --check rag tests bench training
	$(BIN)/python -m pytest

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[ocr]'
	touch $@

$(TESTED): $(STAMP)  ## the chat needs neither the test tools nor Ray
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[ocr,test,ray]'
	touch $@

test-tools:  ## Debian's headless Chromium for the browser test, tesseract (the second OCR engine), groff (test PDFs)
	@scripts/install-test-tools

bench: $(STAMP)  ## run the build benchmark (the others: bench/README.md)
	$(BIN)/python bench/build_speed.py

clean:
	rm -rf $(VENV) indexes/v-* indexes/segments indexes/CURRENT indexes/.lock
