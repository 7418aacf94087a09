"""Tokenizer throughput: ours vs Google's FullTokenizer (bert-tensorflow 1.0.4), same corpus, same run.

Generates clinical-looking text (mostly ASCII, some accents), checks that both tokenizers give the
same tokens, and prints lines/s for each and the ratio.

  PYTHONPATH=. .venv/bin/python benchmarks/tokenization_bench.py [--lines 20000]
"""

import argparse
import os
import random
import tempfile
import time

from tests import oracle
from clinicalbert_tf import tokenization

_WORDS = ("patient s/p CABG h/o MI w/ chest pain BP 120/80 HR 88 [**2101-10-20**] admitted to "
          "[**Hospital1 18**] denies SOB N/V/D afebrile metoprolol 25mg PO BID Lasix 40mg IV "
          "echocardiogram EF 55-60% pneumonia café naïve Dr. Smith").split()


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--lines", type=int, default=20000)
  args = parser.parse_args()
  rng = random.Random(0)
  lines = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 40))) for _ in range(args.lines)]
  with tempfile.TemporaryDirectory() as tmp:  # removed afterwards
    vocab_file = os.path.join(tmp, "vocab.txt")
    pieces = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    for w in oracle.tokenization.BasicTokenizer(do_lower_case=False).tokenize(" ".join(_WORDS)):
      pieces.add(w[:3])
      pieces.update("##" + c for c in w[3:])
    with open(vocab_file, "w", encoding="utf-8") as f:
      f.write("\n".join(sorted(pieces)) + "\n")
    tokenizers = {"google": oracle.tokenization.FullTokenizer(vocab_file, do_lower_case=False),
                  "ours": tokenization.FullTokenizer(vocab_file, do_lower_case=False)}

  results = {}
  outputs = {}
  for name in ("google", "ours"):
    tok = tokenizers[name]
    start = time.perf_counter()
    outputs[name] = [tok.tokenize(line) for line in lines]
    results[name] = time.perf_counter() - start
  assert outputs["google"] == outputs["ours"], "tokens differ"
  for name in ("google", "ours"):
    print("%-7s %8.3f s  %10.0f lines/s" % (name, results[name], len(lines) / results[name]))
  print("speed-up (ours / google): %.2fx  (tokens identical on %d lines)" %
        (results["google"] / results["ours"], len(lines)))


if __name__ == "__main__":
  main()
