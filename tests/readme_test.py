"""The README's commands are the ones the scripts accept.

Every fenced code block of README.md is read as shell: backslash continuations are joined, comments
dropped, and each command that runs one of the top-level scripts (`python x.py ...`, `./x.py ...`) is
split with shlex. Every `--flag` / `--flag=value` / `--noflag` it uses must be a flag of that script,
as the script itself lists them (`python x.py --helpfull`, parsed). Also: every script the README runs
exists, and every top-level script is in the README's table of scripts.
"""

import functools
import os
import re
import shlex

from absl.testing import absltest

from tests import testutil

_FLAG_LINE = re.compile(r"^\s+--(\[no\])?([A-Za-z0-9_.-]+)[:=]?")
_RUNS_SCRIPT = re.compile(r"(^|[\s;&|])(python[0-9.]*\s+|\./)[\w./-]+\.py\b")
_SEPARATORS = {"|", "||", "&&", ";", ">", ">>", "<", "&", "2>", "2>&1", "do", "then"}


def readme_text():
  with open(os.path.join(testutil.REPO, "README.md"), encoding="utf-8") as f:
    return f.read()


def code_blocks(text):
  """The contents of the ``` fenced blocks, in order."""
  return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def commands(block):
  """Logical shell lines of a block (continuations joined), split with shlex (comments dropped)."""
  joined = re.sub(r"\\\n", " ", block)
  out = []
  for line in joined.splitlines():
    if not line.strip():
      continue
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
      out.append(list(lexer))
    except ValueError:
      # Not shell (e.g. the layout listing, "Google's code"); a broken command line is not ok.
      if _RUNS_SCRIPT.search(line.split("#", 1)[0]):
        raise AssertionError("README command does not parse as shell: %s" % line) from None
  return out


def script_invocations(tokens):
  """(script, [flag tokens]) for each top-level script the token list runs."""
  found = []
  for i, token in enumerate(tokens):
    name = os.path.basename(token)
    if not name.endswith(".py") or os.path.dirname(token) not in ("", "."):
      continue
    previous = os.path.basename(tokens[i - 1]) if i else ""
    if i and not re.match(r"^python[0-9.]*$", previous) and not token.startswith("./"):
      continue
    flags = []
    for arg in tokens[i + 1:]:
      if arg in _SEPARATORS:
        break
      if arg.startswith("--"):
        flags.append(arg)
    found.append((name, flags))
  return found


@functools.lru_cache(maxsize=None)
def script_flags(script):
  """The flags a script accepts: (all names, boolean names), from its --helpfull."""
  r = testutil.run_module(script[:-len(".py")], ["--helpfull"], env={"TF_CPP_MIN_LOG_LEVEL": "3"},
                          check=False)
  names, booleans = set(), set()
  for line in (r.stdout + r.stderr).splitlines():
    m = _FLAG_LINE.match(line)
    if m:
      names.add(m.group(2))
      if m.group(1):
        booleans.add(m.group(2))
  if not names:
    raise AssertionError("%s --helpfull listed no flags (exit %d):\n%s" %
                         (script, r.returncode, (r.stdout + r.stderr)[-2000:]))
  return frozenset(names), frozenset(booleans)


def readme_invocations():
  out = []
  for block in code_blocks(readme_text()):
    for tokens in commands(block):
      out.extend(script_invocations(tokens))
  return out


class ReadmeTest(testutil.TestCase):

  def test_parser(self):
    block = ("python a.py --x=1 \\\n    --y=\"two words\" --noz  # comment --not_a_flag\n"
             "for t in a b; do python b.py --t=$t | tee log; done\nmkdir -p x && ./c.py --q\n")
    found = [script_invocations(t) for t in commands(block)]
    self.assertEqual(found, [[("a.py", ["--x=1", "--y=two words", "--noz"])],
                             [("b.py", ["--t=$t"])], [("c.py", ["--q"])]])

  def test_readme_runs_scripts(self):
    scripts = {s for s, _ in readme_invocations()}
    for expected in ("format_notes.py", "create_pretraining_data.py", "run_pretraining.py",
                     "run_finetune.py", "nearest_neighbors.py", "export_hf.py", "import_hf.py",
                     "build_vocab.py", "extract_features.py"):
      self.assertIn(expected, scripts)

  def test_every_flag_exists(self):
    problems = []
    for script, flags in readme_invocations():
      if not os.path.exists(os.path.join(testutil.REPO, script)):
        if os.environ.get("TEST_SRCDIR"):
          # Under Bazel only the scripts in this test's `data` are here; run the file directly (or
          # add the py_binary to `data`) to check the others.
          print("not in this test's data, not checked: %s" % script)
          continue
        problems.append("README runs %s, which does not exist" % script)
        continue
      names, booleans = script_flags(script)
      for flag in flags:
        name = flag[2:].split("=", 1)[0]
        if name in names:
          continue
        if name.startswith("no") and name[2:] in booleans and "=" not in flag:
          continue
        problems.append("README: %s has no flag --%s (used as %s)" % (script, name, flag))
    self.assertEqual(problems, [], "\n".join(problems))

  def test_every_script_is_in_the_table(self):
    text = readme_text()
    scripts = sorted(f for f in os.listdir(testutil.REPO) if f.endswith(".py"))
    self.assertTrue(scripts)
    missing = [s for s in scripts if "| `%s` |" % s not in text]
    self.assertEqual(missing, [], "scripts missing from the README's table of scripts")


if __name__ == "__main__":
  absltest.main()
