# Shortcuts; the scripts are the real entry points (README).
# After `make setup` (or any script) has made .venv:
#   make unit                        the unit tier: seconds, no root
#   make lint                        ruff and mypy --strict
#   make test                        everything, as CI runs it (sets up first; root)
#   make test ARGS="tests/unit/test_config.py -k drop_in"   one file or one test
.PHONY: setup unit lint test demo bench bench-pull bench-run bench-cri bench-ctr bench-metrics
PYTEST ?= .venv/bin/pytest
ARGS ?=

setup:
	bash scripts/setup.sh

unit:
	$(PYTEST) -q tests/unit $(ARGS)

lint:
	.venv/bin/ruff check src tests bench scripts
	.venv/bin/mypy

test:
	bash scripts/test.sh $(ARGS)

demo:
	bash scripts/demo.sh

bench: bench-pull bench-run bench-cri bench-ctr bench-metrics

bench-pull:
	bash bench/pull.sh

bench-run:
	bash bench/run.sh

bench-cri:
	bash bench/cri.sh

bench-ctr:
	bash bench/ctr.sh

bench-metrics:
	bash bench/metrics.sh

# Coverage-guided fuzzing (atheris): each target for FUZZ_SECONDS from its seeds in fuzz/corpus/;
# new inputs and crashes go to FUZZ_OUT (crashes/TARGET/crash-*), a log per target beside them.
.PHONY: fuzz
FUZZ_SECONDS ?= 60
FUZZ_OUT ?= build/fuzz
FUZZ_TARGETS ?= reference manifest config hosts docker_config challenge challenge_client cni pod_sandbox container layer layer_overlay

fuzz:
	@mkdir -p $(FUZZ_OUT); status=0; \
	for t in $(FUZZ_TARGETS); do \
		.venv/bin/python -m tests.fuzz.run $$t --seconds $(FUZZ_SECONDS) --out $(FUZZ_OUT) \
			>$(FUZZ_OUT)/$$t.log 2>&1 || { status=1; echo "!! $$t crashed: see $(FUZZ_OUT)/$$t.log, $(FUZZ_OUT)/crashes/$$t/"; }; \
		echo "$$t: $$(grep -h '^stat::number_of_executed_units' $(FUZZ_OUT)/$$t.log | cut -d' ' -f2) executions in $(FUZZ_SECONDS) s"; \
	done; exit $$status
