# gb10-cluster: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
LAB_NODES ?= 4
LAB_ID ?= 0
export LAB_ID
# The switch simulator of lab N listens on 8729 + N (api-ssl's port for the default lab).
export SWITCH_SIM_PORT ?= $(shell echo $$((8729 + $(LAB_ID))))
export SWITCH_SIM_STATE_DIR ?= $(CURDIR)/lab/.state/$(if $(filter 0,$(LAB_ID)),switch,switch-$(LAB_ID))
export ANSIBLE_FORCE_COLOR ?= 0
export PATH := $(abspath $(BIN)):$(PATH)

# The lab's secrets (switch password, API key, HF token) are vaulted with the lab's own password file.
LAB_VAULT_PASS := $(CURDIR)/lab/.state/serving/vault-pass
demo molecule serve stop lab-serving bench-staging bench-converge: export ANSIBLE_VAULT_PASSWORD_FILE ?= $(LAB_VAULT_PASS)

.PHONY: sanity demo test venv deps lint unit molecule print-scenarios lab-serving serve stop bench-staging lab-up lab-down lab-status lab-build bench-converge clean

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

# The venv imports the gb10.cluster collection by its one name (ansible_collections.gb10.cluster...):
# a .pth file puts collections/ on its path, as an editable install would.
PTH := $(VENV)/.gb10-pth
$(PTH): $(VENV)/.installed
	echo "$(CURDIR)/collections" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/gb10-cluster.pth"
	touch $@

venv: $(VENV)/.installed $(PTH)

deps: venv
	lab/ensure-host.sh

lab-build: deps
	$(PY) -m lab.lab build

lab-up: deps
	$(PY) -m lab.lab up --nodes $(LAB_NODES)
	lab/switch-sim.sh start
	$(PY) -m lab.lab switch-vault

lab-down:
	-lab/switch-sim.sh stop
	-cp $(SWITCH_SIM_STATE_DIR)/log lab/.state/switch-sim-$(LAB_ID).last.log 2>/dev/null
	rm -rf $(SWITCH_SIM_STATE_DIR)
	-python3 -m lab.serving.lab_serving stop-registry
	python3 -m lab.lab down

lab-status:
	python3 -m lab.lab status
	lab/switch-sim.sh status

# The serving side of the lab: registry on the management bridge, the vLLM CPU image (built once,
# cached by content), pushed and pinned by digest, tiny models, the vaulted lab API key.
lab-serving: lab-up
	$(PY) -m lab.serving.lab_serving all

MODEL ?= tiny-qwen3
serve: lab-serving
	$(BIN)/ansible-playbook -i inventory/lab serve.yml -e model=$(MODEL)

stop:
	$(BIN)/ansible-playbook -i inventory/lab stop.yml

bench-staging: lab-serving
	$(PY) -m bench.staging.run

demo: lab-up
	$(BIN)/ansible-playbook -i inventory/lab site.yml

lint: venv
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint
	$(BIN)/ruff check .
	$(MAKE) -s sanity
	git ls-files -z '*.sh' .ci/run | xargs -0 $(BIN)/shellcheck
	for p in site.yml serve.yml plan.yml pin.yml stop.yml status.yml logs.yml power_on.yml bench.yml playbooks/*.yml; do \
	  $(BIN)/ansible-playbook -i inventory/sample --syntax-check $$p >/dev/null || exit 1; done
	@echo "lint: yamllint, ansible-lint, ruff, shellcheck and syntax checks passed"

# ansible-test sanity on the gb10.cluster collection: the tests that run in this venv. The others
# (ansible-doc, changelog, import, pep8, pylint, validate-modules, yamllint, pslint, runtime-metadata) make ansible-test
# bootstrap a venv of its own from a host this machine cannot reach; ruff, yamllint, ansible-lint and
# the DOCUMENTATION tests in tests/unit/plugins/modules cover that ground here.
SANITY_SKIP := ansible-doc changelog import pep8 pylint validate-modules yamllint pslint runtime-metadata
sanity: venv
	cd collections/ansible_collections/gb10/cluster && $(abspath $(BIN))/ansible-test sanity --local --python 3.11 \
	  $(foreach t,$(SANITY_SKIP),--skip-test $(t)) $(SANITY_ARGS)

unit: venv
	$(BIN)/pytest -q tests/unit

# Scenarios in the order they run; each brings the lab up itself (`make lab-up` is idempotent).
# `serve` builds the vLLM CPU image (about 10 minutes cold, cached by content afterwards), serves
# TP=2 across two lab nodes, swaps and rolls back; it needs about 30 GB of free disk for 4 nodes.
# `mirror` copies a 20 MiB test image (built locally) into the control machine's registry mirror once
# and pulls it on every node from there (no vLLM image).
MOLECULE_SCENARIOS ?= default fabric fabric_negative switch faults mirror serve

print-scenarios:
	@echo $(MOLECULE_SCENARIOS)

molecule: deps
	$(PY) -m lab.lab inventory --nodes $(LAB_NODES)
	$(PY) -m lab.lab vault-pass
	@for s in $(MOLECULE_SCENARIOS); do \
	  echo "=== molecule test -s $$s"; \
	  $(BIN)/molecule test -s $$s || exit 1; done

# Everything, stage by stage, with one "N passed, N failed" line at the end (what CI runs).
test: venv
	tests/run-all.sh

bench-converge: deps
	$(PY) -m bench.converge.run

clean: lab-down
	rm -rf .cache artifacts
