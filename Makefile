.PHONY: install test lint bench ci

install:
	python -m pip install -e '.[dev]'

test:
	python -m pytest -q

lint:
	ruff check soakq workers tests bench
	ruff format --check soakq workers tests bench
	mypy soakq workers

bench:
	python bench/bench_embedded.py
	python bench/bench_book.py
	python bench/bench_distributed.py

ci:
	bash .ci/run
