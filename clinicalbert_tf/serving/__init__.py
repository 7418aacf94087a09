"""A fine-tuned model as an HTTP service (`serve.py`).

  batching.py    dynamic batching: requests from many threads, one worker thread owns the model
  service.py     the model behind the worker: spans of notes, NLI pairs, raw tensors; replacement
  tf_serving.py  TF Serving's REST subset (status, metadata, :predict in row or columnar format)
  api.py         the FastAPI app: endpoints, limits, one-line errors, bearer auth, access log
  server.py      uvicorn: binding (loopback by default), SIGTERM drain, a background server
"""
