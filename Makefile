# photofeh: the two entry points are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
DEMO   := demo_output

.PHONY: setup demo test lint bench docs clean

setup: $(STAMP)

# torch==2.13.0 first: it is the CPU wheel on disk; asking for it explicitly
# keeps pip from pulling a multi-GB CUDA build as a dependency.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[dev]"
	touch $(STAMP)

demo: setup
	mkdir -p $(DEMO)
	@echo "== stage 1: simulate a mock survey (200,000 stars) =="
	$(VENV)/bin/photofeh simulate --n-stars 200000 --seed 1 --out $(DEMO)/mock_survey.parquet --workers 2
	@echo "== stage 1b: a spectroscopic training set (20,000 labelled stars) =="
	$(VENV)/bin/photofeh simulate --n-stars 20000 --seed 2 --spec-only --out $(DEMO)/mock_spec.parquet --workers 2
	@echo "== stage 2: train the default network, evaluate it on its test split =="
	$(VENV)/bin/photofeh train $(DEMO)/mock_spec.parquet --config configs/default.toml --out $(DEMO)/run --epochs 30 --quiet --overwrite
	$(VENV)/bin/photofeh evaluate $(DEMO)/run $(DEMO)/mock_spec.parquet
	@echo "== stage 3: predict every star of the survey (streamed, resumable Parquet parts) =="
	rm -rf $(DEMO)/predictions
	$(VENV)/bin/photofeh predict $(DEMO)/run $(DEMO)/mock_survey.parquet --out $(DEMO)/predictions --chunk-rows 50000 \
		--keep sdss_r ebv parallax parallax_error
	@echo "== stage 4: distances and the median [Fe/H] map in Galactocentric R-|Z| (cf. Ivezic et al. 2008) =="
	$(VENV)/bin/photofeh map $(DEMO)/predictions --out $(DEMO)/map --deconvolve
	@echo "== stage 4b: the deconvolved metallicity distribution of the dwarfs (training prior divided out) =="
	rm -rf $(DEMO)/predictions_flat
	$(VENV)/bin/photofeh predict $(DEMO)/run $(DEMO)/mock_survey.parquet --out $(DEMO)/predictions_flat --chunk-rows 50000 \
		--prior flat --quiet
	$(VENV)/bin/photofeh mdf $(DEMO)/predictions_flat --out $(DEMO)/mdf --giants exclude --bootstrap 100
	@echo "== stage 5: missing photometry: a masked model predicts stars lacking SDSS or Gaia too =="
	$(VENV)/bin/photofeh train $(DEMO)/mock_spec.parquet --config configs/masked.toml --out $(DEMO)/run_masked --overwrite \
		--epochs 30 --quiet
	rm -rf $(DEMO)/predictions_masked
	$(VENV)/bin/photofeh predict $(DEMO)/run_masked $(DEMO)/mock_survey.parquet --out $(DEMO)/predictions_masked \
		--chunk-rows 50000 --keep sdss_r ps1_r ebv parallax parallax_error --quiet
	@echo "   (the [Fe/H] map uses stars with SDSS u only: see docs/maps.md, 'Which stars to map')"
	$(VENV)/bin/photofeh map $(DEMO)/predictions_masked --out $(DEMO)/map_masked

test: setup
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts

bench: setup
	$(PY) benchmarks/run_all.py

docs: setup
	$(PY) -m photofeh.schema > docs/schema.md
	$(PY) -m photofeh.train > docs/config.md

clean:
	rm -rf $(DEMO) .pytest_cache
