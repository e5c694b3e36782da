# snn2chip developer entry points.
#   make demo   runs the main job on a bundled model: compile the SEW-ResNet ADD of the zoo for
#               Loihi 2, then verify it (float vs chip on 100 digits, Lava on 2) (creates .venv first when needed)
#   make golden rewrites the golden regression files tests/golden/*.npz (after an intended change)
#   make test   runs the test suite in .venv, then every test not marked lava in .venv-modern
#               (creates both first when needed, side by side); .ci/run calls this
#   make test-fast  the inner loop: the tests marked neither slow (> ~5 s) nor lava, in .venv
#   make test-modern  the tests not marked lava, in .venv-modern only
# .venv is built from Python 3.10 (Lava requires >=3.10,<3.11) and requirements.lock;
# .venv-modern (the core without Lava: numpy 2, current torch, spikingjelly 2) from Python >= 3.12
# and requirements-modern.lock.

VENV       := .venv
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.installed
DEMO_MODEL ?= models/zoo/sew_add.nir
PYTEST_ARGS ?=
MODERN       := .venv-modern
MODERN_BIN   := $(MODERN)/bin
MODERN_STAMP := $(MODERN)/.installed

# First Python 3.10 found: python3.10 on PATH, then pyenv's installed versions (newest first).
PYTHON310 = $(shell for c in python3.10 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10.*/bin/python3.10 2>/dev/null | sort -rV); do \
	  $$c -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { command -v $$c; break; }; done)

# First Python 3.12 or newer found: python3.12, python3.13 on PATH, then pyenv's installed versions (newest first).
PYTHON_MODERN = $(shell for c in python3.12 python3.13 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9].*/bin/python3 2>/dev/null | sort -rV); do \
	  $$c -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1 && { command -v $$c; break; }; done)

.PHONY: demo test test-fast test-modern venv venv-modern lock lock-modern golden

# The digits image / 16 travels as a graded payload 0..16 (exact): --input-bits 6 --input-scale 16.
demo: $(STAMP)
	$(BIN)/snn2chip compile $(DEMO_MODEL) -o build/demo --input-bits 6 --input-scale 16 --steps 4
	$(BIN)/snn2chip verify $(DEMO_MODEL) --target loihi2 --data digits --samples 100 --lava-samples 2 -o build/demo-verify

# Golden files: the simulator's outputs on the first 20 digits test images per zoo model,
# checked by tests/test_verify.py; regenerate after a change that is meant to alter compiled outputs.
GOLDEN_MODELS ?= sew_add sew_and sew_iand ms_resnet spiking_resnet

golden: $(STAMP)
	@for m in $(GOLDEN_MODELS); do \
	  $(BIN)/snn2chip verify models/zoo/$$m.nir --data digits --samples 20 --golden tests/golden/$$m.npz --update-golden || exit 1; \
	done

# Both environments are created side by side (pip unpacks wheels on both cores: 188 s instead of
# 168 + 138 s one after the other), then the suites run one after the other (side by side they
# took longer: one suite already keeps both cores busy).
test:
	@$(MAKE) -s --no-print-directory -j2 --output-sync=target $(STAMP) $(MODERN_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MODERN_BIN)/python -m pytest -m "not lava" $(PYTEST_ARGS)

test-modern: $(MODERN_STAMP)
	$(MODERN_BIN)/python -m pytest -m "not lava" $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not lava" $(PYTEST_ARGS)

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@if ! $(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then \
	  py="$(PYTHON310)"; \
	  if [ -z "$$py" ]; then echo "snn2chip: Python 3.10 not found: install it (e.g. 'pyenv install 3.10' or your distribution's python3.10 with venv)" >&2; exit 1; fi; \
	  echo "creating $(VENV) with $$py"; rm -rf $(VENV) && "$$py" -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# Rewrite requirements.lock from what .venv holds now.
lock:
	{ echo "# Exact versions for .venv (Python 3.10). Regenerate with 'make lock' after changing dependencies in pyproject.toml."; \
	  echo "argparse==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("argparse"))')"; \
	  $(BIN)/python -m pip freeze --all --exclude-editable | grep -v -i -E '^(snn2chip|pip|pyflakes)[= ]'; } > requirements.lock

venv-modern: $(MODERN_STAMP)

$(MODERN_STAMP): requirements-modern.lock pyproject.toml
	@if ! $(MODERN_BIN)/python -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then \
	  py="$(PYTHON_MODERN)"; \
	  if [ -z "$$py" ]; then echo "snn2chip: Python 3.12 or newer not found (for $(MODERN)): install it (e.g. 'pyenv install 3.12' or your distribution's python3.12 with venv)" >&2; exit 1; fi; \
	  echo "creating $(MODERN) with $$py"; rm -rf $(MODERN) && "$$py" -m venv $(MODERN); \
	fi
	$(MODERN_BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-modern.lock
	$(MODERN_BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# Rewrite requirements-modern.lock from what .venv-modern holds now.
lock-modern:
	{ echo "# Exact versions for .venv-modern (made on Python $$($(MODERN_BIN)/python -c 'import platform; print(platform.python_version())'); no Lava). Regenerate with 'make lock-modern' after changing dependencies in pyproject.toml."; \
	  $(MODERN_BIN)/python -m pip freeze --all --exclude-editable | grep -v -i -E '^(snn2chip|pip)[= ]'; } > requirements-modern.lock

# Model zoo (models/): `make zoo` retrains and re-exports everything in models/zoo/ from scratch
# (deterministic; 5-7 minutes on 2 cores); `make scale` writes the random-weight scale graphs
# to out/scale/ (not committed), one process per model so each reports its own peak memory.
.PHONY: zoo scale
SCALE_MODELS ?= sew_resnet18 sew_resnet34 sew_resnet50 sew_resnet101 sew_resnet152 ms_resnet18 ms_resnet34 ms_resnet104 \
                sew_resnet18_32 sew_resnet34_32 ms_resnet18_32 ms_resnet34_32 ms_resnet482

zoo: $(STAMP)
	$(BIN)/python -m models.zoo

scale: $(STAMP)
	@for m in $(SCALE_MODELS); do $(BIN)/python -m models.scale $$m --out-dir out/scale --check || exit 1; done
