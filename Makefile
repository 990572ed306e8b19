# The two commands of the README's quick start: `make demo` and `make test`.
# Each sets everything up first (idempotent: scripts/setup.sh).
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-slow bench bench-full clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m gapkit demo

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

# Side-by-side benchmarks, each printing its ratio against the baseline. `make bench` runs the
# short versions (minutes); `make bench-full` runs every target at the size its issue names
# (hours on 2 cores; the metrics and fixers ones need ~20 GB of free disk for memory-mapped shards).
bench: setup
	$(PY) benchmarks/bench_metrics.py --quick
	$(PY) benchmarks/bench_sphere.py
	$(PY) benchmarks/bench_losses.py --quick
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_embed.py
	$(PY) benchmarks/bench_fixers.py --rows 1000000 --dtype float32 --fixers center,shift

bench-full: setup
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_sphere.py --full
	$(PY) benchmarks/bench_losses.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_embed.py
	$(PY) benchmarks/bench_fixers.py

clean:
	rm -rf .venv .pytest_cache build src/*.egg-info
