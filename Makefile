# Two commands for a fresh machine (see README.md):
#   make test                    install into .venv, run the test suite
#   make reproduce SCALE=smoke   install into .venv, run every notebook at a scale
# and JupyterLab (README, "In JupyterLab"):
#   make lab                     JupyterLab from .venv with notebooks/ open (as root: it adds --allow-root)
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= smoke

.PHONY: install test reproduce summary clean-venv lab kernel browser-check

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# The kernel repro-vit inside .venv (the committed notebooks name it) and the git filter that keeps their outputs
# out of git (.gitattributes); offline, and harmless outside a git checkout (repro/lab.py).
$(VENV)/.lab: $(VENV)/.installed repro/lab.py
	$(PY) -m repro.lab setup
	touch $@

install: $(VENV)/.installed $(VENV)/.lab

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

# JupyterLab from .venv, serving the repository with notebooks/ open, on the kernel repro-vit. A notebook run there
# writes to lab/results/ (ignored by git), not to the committed results/; saving it keeps `git status` clean
# (repro.lab.post_save_hook with the git filter). LAB_ARGS passes options, e.g.
# LAB_ARGS="--no-browser --port 8890"; as root --allow-root is added.
LAB_ARGS ?=
lab: install
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --ServerApp.default_url=/lab/tree/notebooks \
		--ContentsManager.post_save_hook=repro.lab.post_save_hook $(if $(filter 0,$(shell id -u)),--allow-root) \
		$(LAB_ARGS)

# The kernel repro-vit for a JupyterLab of your own (~/.local/share/jupyter/kernels), not only .venv's.
kernel: install
	$(PY) -m repro.lab kernel --user

# Headless Chromium drives JupyterLab in a fresh clone of HEAD: notebook 01 at smoke run, saved, reopened; no error,
# no broken widget, no change to tracked files (tools/browser_check.py). Not part of `make test` (CI): it needs
# Chromium (Debian's package, installed here when missing) and a few minutes.
BROWSER_ARGS ?=
browser-check: install
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(PY) tools/browser_check.py $(BROWSER_ARGS)
