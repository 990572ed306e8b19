# The two commands of the README's quick start: `make demo` and `make test`.
# Each sets everything up first (idempotent: scripts/setup.sh).
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-slow bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m gapkit demo

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .venv .pytest_cache build src/*.egg-info
