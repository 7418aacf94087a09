"""export_savedmodel.py / savedmodel.py: plain TensorFlow loads the export and gets the checkpoint's
probabilities (within 1e-5); predict.py reads the export alone."""

import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import checkpoints
from clinicalbert_tf import fileio
from clinicalbert_tf import inference
from clinicalbert_tf.finetuning import heads
from clinicalbert_tf.inference import readers
from clinicalbert_tf import savedmodel
from tests import testutil

# Run by a child Python that imports TensorFlow 2 only (eager, no project code).
PLAIN_TF = """
import sys
from absl.testing import absltest
import numpy as np
import tensorflow as tf
inputs = np.load(sys.argv[2])
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = serve(**{k: tf.constant(inputs[k]) for k in ("input_ids", "input_mask", "segment_ids")})
np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})
"""


class SavedModelTest(testutil.TestCase):

  def check_export(self, head, labels):
    d = self.temp_dir()
    model_dir = testutil.write_model_dir(os.path.join(d, "model"), labels=labels, head=head)
    path = savedmodel.export(model_dir, os.path.join(d, "serving"))
    self.assertEqual(path, os.path.join(d, "serving", "1"))
    self.assertEqual(sorted(os.listdir(os.path.join(path, "assets"))),
                     sorted([checkpoints.BERT_CONFIG_FILE, checkpoints.HEAD_RECORD_FILE,
                             checkpoints.VOCAB_FILE]))
    self.assertEqual(savedmodel.next_version(os.path.join(d, "serving")), 2)
    with self.assertRaisesRegex(fileio.InputError, "version 1 exists already"):
      savedmodel.export(model_dir, os.path.join(d, "serving"), version=1)
    self.assertEqual(sorted(os.listdir(os.path.join(d, "serving"))), ["1"])  # no leftovers

    rng = np.random.RandomState(0)
    lengths = [16, 9, 3]
    ids = rng.randint(5, 90, size=[3, 16]).astype(np.int32)
    mask = (np.arange(16)[None, :] < np.array(lengths)[:, None]).astype(np.int32)
    ids *= mask
    segments = (np.arange(16)[None, :] >= 6).astype(np.int32) * mask
    feeds = os.path.join(d, "in.npz")
    np.savez(feeds, input_ids=ids, input_mask=mask, segment_ids=segments)
    result = os.path.join(d, "out.npz")
    env = testutil.script_env()
    env.pop("PYTHONPATH")  # plain TensorFlow: the project is not importable
    subprocess.run([sys.executable, "-c", PLAIN_TF, path, feeds, result], check=True, env=env,
                   cwd=d, capture_output=True)
    served = np.load(result)

    model = inference.load_model(model_dir)
    try:
      feed = {model.inputs["input_ids"]: ids, model.inputs["input_mask"]: mask,
              model.inputs["segment_ids"]: segments}
      want = model.session.run(model.outputs, feed)
    finally:
      model.close()
    self.assertAllClose(served["probabilities"], want["probabilities"], rtol=0, atol=1e-5)
    self.assertAllEqual(served["label_ids"], want["label_ids"])
    expected_shape = ([3, 16, len(labels)] if heads.head_class(head).output == heads.WORD_LABELS
                      else [3, len(labels)])
    self.assertEqual(list(served["probabilities"].shape), expected_shape)
    return model_dir, os.path.join(d, "serving")

  def test_token_head_export_and_predict_from_it(self):
    model_dir, export_dir = self.check_export("token_classification", testutil.NER_LABELS)
    notes = [readers.Note("n%d" % i, t, "x", "x") for i, t in enumerate(testutil.NOTES)]
    results = []
    for directory in (model_dir, export_dir):
      model = inference.load_model(directory)
      try:
        results.append([(n.id, [(s.start, s.end, s.label, round(s.score, 4)) for s in spans])
                        for n, spans in inference.Predictor(model).predict(notes)])
      finally:
        model.close()
    self.assertEqual(results[0], results[1])
    self.assertGreater(sum(len(s) for _, s in results[0]), 0)

  def test_sequence_head_export(self):
    self.check_export("sequence_classification", ["contradiction", "entailment", "neutral"])

  def test_script(self):
    d = self.temp_dir()
    model_dir = testutil.write_model_dir(os.path.join(d, "model"))
    proc = testutil.run_module("export_savedmodel", ["--model_dir=" + model_dir,
                                                     "--export_dir=" + d + "/serving",
                                                     "--export_version=7"])
    self.assertIn("wrote %s/serving/7" % d, proc.stdout)
    proc = testutil.run_module("export_savedmodel", ["--model_dir=" + d], check=False)
    self.assertEqual(proc.returncode, 1)
    self.assertIn("export_savedmodel.py: error: --export_dir is required",
                  proc.stderr.strip().splitlines()[-1])


if __name__ == "__main__":
  tf.disable_v2_behavior()
  absltest.main()
