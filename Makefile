# make install  - create .venv and install everything (torch==2.13.0 first)
# make test     - install if needed, then run the test suite
# make demo     - install if needed, then a short run: train -> eval -> export -> eval --onnx -> score
# make train    - install if needed, then the full default recipe
# make backbone-mpnet - install if needed, then all-mpnet-base-v2 (110M, ~470 MB download, sha256-checked)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mtcli-installed
PYTEST_ARGS ?=

.PHONY: install test demo train backbone-mpnet clean

install: $(STAMP)

$(STAMP): pyproject.toml CMakeLists.txt scripts/setup.sh $(wildcard csrc/*.cpp csrc/*.cu csrc/*.h csrc/CMakeLists.txt)
	bash scripts/setup.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/mtcli train --max-steps 100 --name demo
	$(BIN)/mtcli export --checkpoint runs/demo/best --out export
	$(BIN)/mtcli eval --split dev --onnx export --out runs/demo/onnx-eval
	$(BIN)/mtcli score sts data/sts-dev.csv -o runs/demo/sts-dev-scores.tsv
	head -5 runs/demo/sts-dev-scores.tsv

train: $(STAMP)
	$(BIN)/mtcli train

backbone-mpnet: $(STAMP)
	$(BIN)/mtcli backbones install all-mpnet-base-v2

clean:
	rm -rf build $(VENV) .pytest_cache
