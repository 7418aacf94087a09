"""Scoring spans against gold: the shared tasks' own scorers, SemEval span schemes, an HTML review.

  readers.py   gold and system notes from i2b2 2014 XML, i2b2 2010 `.txt` + `.con`, brat `.ann` +
               `.txt`, or predict.py's JSON lines (with the notes' text); pairs them by note id
  i2b2_2014.py the i2b2/n2c2 2014 de-identification scorer (kotfic/i2b2_evaluation_scripts' `phi`
               definitions and report layout, reimplemented)
  i2b2_2010.py the i2b2/VA 2010 concept scorer's exact/inexact, class/no-class measures
  spans.py     SemEval-2013's four schemes (strict, exact, partial, type), F2, binary token recall
  report.py    P/R/F helpers and the plain-text + JSON report files
  html.py      the self-contained review page (gold against system, or system spans only)
  finetune.py  the official scores of run_finetune.py's i2b2 2006 / 2014 test predictions

`evaluate.py` is the thin script over this package.
"""
