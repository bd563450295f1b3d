# Two commands start a new user: `make demo` and `make test`. Both create .venv and work offline
# (the package registries are the only network they use).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out
NBDEV_FLAGS ?=
# Parallel notebook tests: 2 workers match the CI machine. `make test` runs the notebooks once, through `docs`
# (scripts/docs.py executes every notebook as nbdev-test does and fails when one fails); `nbtest` runs them alone.
NBDEV_N ?= 2

.PHONY: install demo test export export-check nbtest pytest docs clean bench-data

# The venv follows pyproject.toml's content, not its mtime (a checkout or a tool rewriting the same bytes would
# reinstall it): the hash file is rewritten only when the content changes.
DEPS_HASH := $(VENV)/.pyproject.sha256
.PHONY: always
$(DEPS_HASH): always
	@mkdir -p $(VENV)
	@sha256sum pyproject.toml | cmp -s - $@ || sha256sum pyproject.toml > $@

$(STAMP): $(DEPS_HASH)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Fit the baseline on the embedded MVTec AD bottle sample: prints a results table, writes heatmap PNGs.
demo: $(STAMP)
	$(BIN)/anomaly-fastai bench --out $(DEMO_OUT) --force

# the browser tests check the site `docs` has just built (DOCS_SITE) instead of building it again
test: $(STAMP) export-check docs
	DOCS_SITE=docs $(MAKE) --no-print-directory pytest

export: $(STAMP)
	$(BIN)/nbdev-export
	$(BIN)/python scripts/readme.py

# The committed modules must be exactly what the notebooks export.
export-check: export
	@git diff --exit-code --stat -- anomaly_fastai README.md || (echo "anomaly_fastai/ or README.md differs from nbs/: run 'make export' and commit both"; exit 1)
	@test -z "$$(git status --porcelain --untracked-files=all -- anomaly_fastai | grep '\.py$$')" || (echo "untracked exported modules: commit them"; git status --short -- anomaly_fastai; exit 1)

nbtest: $(STAMP)
	$(BIN)/nbdev-test --n-workers $(NBDEV_N) $(if $(NBDEV_FLAGS),--flags "$(NBDEV_FLAGS)")

pytest: $(STAMP)
	$(BIN)/pytest -q -rs

# Documentation site, offline (Quarto is not needed): scripts/docs.py runs the notebooks (cells flagged slow skipped;
# only those changed since the last build), nbdev-proc-nbs, then smalldocs. DOCS_FLAGS=--force runs them all again.
DOCS_FLAGS ?=
docs: $(STAMP)
	$(BIN)/python scripts/docs.py $(DOCS_FLAGS)

clean:
	rm -rf _proc _docs_build docs $(DEMO_OUT) .pytest_cache
