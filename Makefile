# batchlabel: the two commands a newcomer needs are `make run` and `make test`; both install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
LS_VENV := .venv-ls
BIN := $(VENV)/bin
# The torch/torchvision pair: a matching pair matters (segment_anything imports torchvision). Override on machines
# where another pair fits (e.g. `make install TORCH_PAIR="torch==2.9.1 torchvision==0.24.1"` on aarch64).
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.1
LABEL_STUDIO ?= label-studio==1.23.2
MMENGINE ?= mmengine==0.10.7
# The batchlabel[ultralytics] extra (AGPL-3.0) for the detect tests and the offline demo: installed --no-deps with its
# needs listed here, because its opencv-python requirement would clobber opencv-python-headless.
ULTRALYTICS ?= ultralytics==8.4.190
ULTRALYTICS_NEEDS ?= matplotlib requests psutil "polars>=0.20" "ultralytics-thop>=2.2.3"
CONFIG ?= configs/cats.yaml
PYTEST_ARGS ?=
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: install run test lint samples clean-cache browser

install: $(VENV)/.installed $(LS_VENV)/.installed

# batchlabel with its dev extras (tests, lint, sample data) and the Ray extra (for its tests); torch pinned as a pair
# first so nothing replaces it.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) $(TORCH_PAIR) 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import torch, torchvision" || { echo "torch/torchvision install failed"; exit 1; }
	$(BIN)/pip install $(PIP_QUIET) $(TORCH_PAIR) -e '.[dev,ray]' 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/pip install $(PIP_QUIET) --no-deps $(MMENGINE) 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/pip install $(PIP_QUIET) $(TORCH_PAIR) $(ULTRALYTICS_NEEDS) 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/pip install $(PIP_QUIET) --no-deps $(ULTRALYTICS) 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import batchlabel, segment_anything, label_studio_sdk, pycocotools" || { echo "install failed"; exit 1; }
	touch $@

# Label Studio in its own venv: it pins Django, numpy and pandas, which must not touch batchlabel's stack.
$(LS_VENV)/.installed:
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install $(PIP_QUIET) $(LABEL_STUDIO) 2>&1 | grep -v "^WARNING: Location" || true
	test -x $(LS_VENV)/bin/label-studio || { echo "Label Studio install failed"; exit 1; }
	touch $@

# Sample images (skimage's cat and friends) in the example document root, so a fresh machine has something to label.
samples: install
	$(BIN)/python -m batchlabel.samples $(CONFIG)

# Without internet the official SAM weights cannot be fetched: `up` exits 3 and the offline demo (LiteMedSAM, whose
# weights ship in a wheel) starts instead, saying so.
run: install samples
	@$(BIN)/batchlabel up $(CONFIG); rc=$$?; \
	if [ $$rc -eq 3 ] && [ "$(CONFIG)" = "configs/cats.yaml" ]; then \
	  echo "make run: falling back to the offline demo configs/cats-offline.yaml (YOLO11n + LiteMedSAM, box prompts)"; \
	  $(BIN)/python -m batchlabel.samples configs/cats-offline.yaml && $(BIN)/batchlabel up configs/cats-offline.yaml; \
	else exit $$rc; fi

# Debian's chromium for the browser end-to-end test (never a browser download); needs root for apt-get, otherwise
# the browser test is skipped with that reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	  else echo "chromium is not installed and this is not root: the browser test will be skipped"; fi; }

test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff, mypy, and the layer contracts of pyproject.toml ([tool.importlinter]) on this checkout's package.
lint: install
	$(BIN)/ruff check batchlabel tests benchmarks
	$(BIN)/mypy batchlabel
	PYTHONPATH=$(CURDIR) $(BIN)/lint-imports --no-cache --no-logo

clean-cache:
	rm -rf .batchlabel
