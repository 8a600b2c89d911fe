# Shortcuts; the scripts are the real entry points (README).
.PHONY: setup test bench bench-pull bench-run bench-cri demo

setup:
	bash scripts/setup.sh

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

bench: bench-pull

bench-pull:
	bash bench/pull.sh

bench: bench-run

bench-run:
	bash bench/run.sh

bench: bench-cri

bench-cri:
	bash bench/cri.sh
