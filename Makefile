# Two commands for users: `make demo` and `make test`. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := test

VENV := .venv
# The stamp names a hash of everything that decides what is installed, so a second `make` finds it and
# skips the install, and a changed pin installs again.
VENV_INPUTS := requirements.txt requirements-test.txt tools/setup_venv.sh
VENV_HASH := $(shell cat $(VENV_INPUTS) | sha256sum | cut -c1-16)
VENV_STAMP := $(VENV)/.installed-$(VENV_HASH)

.PHONY: venv bazel browser java test demo clean

venv: $(VENV_STAMP)

$(VENV_STAMP):
	tools/setup_venv.sh $(VENV) $@

# Debian's bazel-bootstrap (4.2.3) is the only Bazel reachable here; see ../shared/notes/bazel-offline.md.
bazel:
	@if ! command -v bazel >/dev/null; then \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "== installing Debian's bazel-bootstrap"; \
	  $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y bazel-bootstrap; \
	fi

# Debian's chromium, for the review page's browser test (tests/evaluate_html_test.py).
browser:
	@if ! command -v chromium >/dev/null; then \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "== installing Debian's chromium"; \
	  $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi

# The Spark engine (pyspark) needs a Java 17 runtime: Debian's openjdk-17-jre-headless.
java:
	@if ! command -v java >/dev/null && [ -z "$$JAVA_HOME" ]; then \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "== installing Debian's openjdk-17-jre-headless (for the Spark engine)"; \
	  $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y openjdk-17-jre-headless; \
	fi

test: venv bazel browser java
	tools/run_tests.sh

demo: venv java
	tools/demo.sh

clean:
	-command -v bazel >/dev/null && bazel clean --expunge
	rm -rf demo_output
