# photofeh: the two entry points are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
DEMO   := demo_output

.PHONY: setup demo test test-all lint bench docs clean

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
	@echo "== stage 1: a mock survey of 2,000,000 stars: the SDSS north cap (b > 30), 14 < u < 21.5 =="
	$(VENV)/bin/photofeh simulate --n-stars 2000000 --seed 1 --out $(DEMO)/mock_survey.parquet --overwrite --workers 2 \
		--min-abs-b 30 --north-only --footprint sdss=min_b:30 --select-band sdss_u --mag-range 14 21.5
	@echo "== stage 1b: a spectroscopic training set (20,000 labelled stars) =="
	$(VENV)/bin/photofeh simulate --n-stars 20000 --seed 2 --spec-only --out $(DEMO)/mock_spec.parquet --overwrite --workers 2
	@echo "== stage 2: train the default network (and the baselines), evaluate it on its test split; the mock knows each =="
	@echo "==          labelled star's targeting probability, which weights the calibration stars of map and mdf =="
	$(VENV)/bin/photofeh train $(DEMO)/mock_spec.parquet --config configs/default.toml --out $(DEMO)/run --epochs 30 --quiet --overwrite \
		--selection-column spec_target_probability
	$(VENV)/bin/photofeh evaluate $(DEMO)/run $(DEMO)/mock_spec.parquet
	@echo "== stage 3: predict every star of the survey (streamed, resumable Parquet parts) =="
	rm -rf $(DEMO)/predictions
	$(VENV)/bin/photofeh predict $(DEMO)/run $(DEMO)/mock_survey.parquet --out $(DEMO)/predictions --chunk-rows 250000 \
		--keep sdss_r ebv parallax parallax_error --quiet
	@echo "== stage 4: distances and the [Fe/H] maps in Galactocentric R-|Z| out to |Z| = 15 kpc (cf. Ivezic et al. 2008) =="
	$(VENV)/bin/photofeh map $(DEMO)/predictions --out $(DEMO)/map --overwrite --r-max 25 --z-max 15 --slices 0 1 2 4 6 10 15
	@echo "== stage 4b: the metallicity distribution of the dwarfs, unfolded through the model's measured response (flat-prior estimates) =="
	rm -rf $(DEMO)/predictions_flat
	$(VENV)/bin/photofeh predict $(DEMO)/run $(DEMO)/mock_survey.parquet --out $(DEMO)/predictions_flat --chunk-rows 250000 \
		--prior flat --quiet
	$(VENV)/bin/photofeh mdf $(DEMO)/predictions_flat --out $(DEMO)/mdf --overwrite --giants exclude --bootstrap 30
	@echo "== stage 5: missing photometry: on an all-sky survey (|b| > 20, 14 < r < 22.5) many stars lack SDSS or Gaia; =="
	@echo "==          a masked model predicts them too =="
	$(VENV)/bin/photofeh simulate --n-stars 300000 --seed 3 --out $(DEMO)/mock_allsky.parquet --overwrite --workers 2 --quiet
	$(VENV)/bin/photofeh train $(DEMO)/mock_spec.parquet --config configs/masked.toml --out $(DEMO)/run_masked --overwrite \
		--epochs 30 --quiet
	rm -rf $(DEMO)/predictions_masked
	$(VENV)/bin/photofeh predict $(DEMO)/run_masked $(DEMO)/mock_allsky.parquet --out $(DEMO)/predictions_masked \
		--chunk-rows 100000 --keep sdss_r ps1_r ebv parallax parallax_error --quiet
	@echo "   (the [Fe/H] map uses stars with SDSS u only: see docs/maps.md, 'Which stars to map')"
	$(VENV)/bin/photofeh map $(DEMO)/predictions_masked --out $(DEMO)/map_masked --overwrite
	@echo "== stage 6: the run report: one self-contained HTML page =="
	$(VENV)/bin/photofeh report $(DEMO)/run --predictions $(DEMO)/predictions --map $(DEMO)/map --overwrite
	@echo "open $(DEMO)/run/report.html in a browser"

# make test: every test but the few long end-to-end ones marked slow (@pytest.mark.slow); make test-all (what
# CI's .ci/run runs) runs those too. benchmarks/bench_test_durations.py lists the slowest in README.md.
# Both run on TEST_WORKERS processes (pytest-xdist): each test is single-threaded (tests/conftest.py sets
# OMP_NUM_THREADS=1), so two processes use both cores of a 2-core machine (README: the suite's measured time).
TEST_WORKERS ?= 2
test: setup
	$(VENV)/bin/pytest -q -m "not slow" -n $(TEST_WORKERS)

test-all: setup
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS)

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts

bench: setup
	$(PY) benchmarks/run_all.py

# The generated pages, then BENCHMARKS.md and every measured number quoted in README.md and docs/*.md,
# rendered from benchmarks/results/*.json (benchmarks/docnumbers.py; tests/test_docs_numbers.py checks them).
docs: setup
	$(PY) -m photofeh.schema > docs/schema.md
	$(PY) -m photofeh.model.train > docs/config.md
	$(PY) benchmarks/render.py

clean:
	rm -rf $(DEMO) .pytest_cache
