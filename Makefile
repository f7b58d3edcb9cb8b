# make install  - create .venv and install everything (torch==2.13.0 first)
# make test     - install if needed, then run the test suite
# make demo     - install if needed, then train -> export -> eval on the bundled data
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mtcli-installed
PYTEST_ARGS ?=

.PHONY: install test demo clean

install: $(STAMP)

$(STAMP): pyproject.toml CMakeLists.txt scripts/setup.sh $(wildcard csrc/*.cpp csrc/*.cu csrc/*.h csrc/CMakeLists.txt)
	bash scripts/setup.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/mtcli train --max-steps 300 --name demo
	$(BIN)/mtcli eval --split dev --checkpoint runs/demo/best

clean:
	rm -rf build $(VENV) .pytest_cache
