# Two commands for a fresh machine (see README.md):
#   make test                    install into .venv, run the test suite
#   make reproduce SCALE=smoke   install into .venv, run every notebook at a scale
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= smoke

.PHONY: install test reproduce summary clean-venv

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest

clean-venv:
	rm -rf $(VENV)

# The main job: every notebook through papermill at SCALE (smoke | cpu | gpu | paper).
# PARAMS passes notebook parameters, e.g. PARAMS="-p pretrained_checkpoint=/ckpt/ViT-B_16.npz".
# REDRAW=1 trains nothing: tables, claims, figures and SUMMARY.md are rebuilt from the committed runs' files.
PARAMS ?=
REDRAW ?=
reproduce: install
	$(PY) -m repro reproduce --scale $(SCALE) $(PARAMS) $(if $(REDRAW),--redraw)

# results/SUMMARY.md from every notebook's claims.json and findings.json (make reproduce does this too).
summary: install
	$(PY) -m repro summary
