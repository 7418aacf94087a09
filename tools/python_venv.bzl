"""A repository rule that registers <workspace>/.venv/bin/python3 as Bazel's Python 3 toolchain.

Bazel 4 otherwise runs the first `python3` on PATH (no TensorFlow there), ignores `--python_path` and
refuses `--python_top`. The interpreter path is built as a string and never resolved: `.venv/bin/python3`
is a symlink to the base interpreter, and only the unresolved path makes Python use the venv's
site-packages.
"""

def _python_venv_impl(rctx):
    workspace = str(rctx.path(Label("@//:WORKSPACE")).dirname)
    python = workspace + "/" + rctx.attr.venv + "/bin/python3"
    if not rctx.path(python).exists:
        fail("%s does not exist: run `make venv` first (it creates %s/%s with Python 3.11)" %
             (python, workspace, rctx.attr.venv))
    rctx.file("BUILD", """\
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

py_runtime(
    name = "py3_runtime",
    interpreter_path = "{python}",
    python_version = "PY3",
    stub_shebang = "#!{python}",
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":py3_runtime",
)

toolchain(
    name = "toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
""".format(python = python))

python_venv = repository_rule(
    implementation = _python_venv_impl,
    attrs = {
        "venv": attr.string(default = ".venv", doc = "The virtual environment, relative to the workspace."),
    },
    doc = "Registers <workspace>/<venv>/bin/python3 as the Python 3 runtime.",
)
