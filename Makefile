# Two commands do everything on a fresh Debian machine (as root):
#   make study   set up, then run the embedded study into runs/
#   make test    set up, then run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dapt-installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
STUDY ?= params/fashion_quick.yaml

.PHONY: venv study test test-browser lab fashion-mnist clean-venv

venv: $(STAMP) fashion-mnist

# Re-installs only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (dapt)" >/dev/null
	@touch $(STAMP)

fashion-mnist:
	@if [ -f $(FASHION_MNIST) ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; } || \
		echo "note: could not install dataset-fashion-mnist; the study will say how to get Fashion-MNIST"; \
	else \
		echo "note: Fashion-MNIST is not in /usr/share/datasets; on Debian run 'sudo apt-get install dataset-fashion-mnist'," \
		     "elsewhere add 'download: true' to the study's defaults (torchvision downloads it to data/)"; \
	fi

study: venv
	$(BIN)/dapt run $(STUDY)

test: venv
	$(BIN)/python -m pytest

# The explorer in a real browser: Debian's headless Chromium (apt, as root) driven by Playwright's
# Python API; Playwright's own browser download is never used. Screenshot: .browser-check/explore.png
test-browser: venv
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } || \
		{ echo "test-browser needs /usr/bin/chromium: run as root on Debian, or 'sudo apt-get install chromium'"; exit 1; }
	@$(BIN)/python -c "import playwright" 2>/dev/null || $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[browser]'
	$(BIN)/python tests/browser_check.py

# JupyterLab on the repository with the project's kernel ("Python 3 (dapt)"); start with notebooks/explore.ipynb
lab: venv
	$(BIN)/jupyter lab --ServerApp.root_dir=. notebooks/explore.ipynb

clean-venv:
	rm -rf $(VENV)
