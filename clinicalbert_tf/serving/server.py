"""Running the app with uvicorn: binding, the loopback warning, SIGTERM drain, a background server.

  sock = server.bind("127.0.0.1", 0)               # port 0: a free one; sock.getsockname()[1]
  server.run(app, sock)                            # until SIGTERM / SIGINT: drains, returns
  with server.Background(app) as url: ...          # tests and benchmarks: a server in a thread

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections, lets the requests in flight finish,
then the app's shutdown stops the batching worker and closes the model; `run` returns and the
process exits 0 (uvicorn would re-raise the signal, and the process end by it, after draining).
uvicorn's own access log is off: `api.Gate` writes one without the raw path.
"""

import contextlib
import ipaddress
import signal
import socket
import threading

from absl import logging
import uvicorn

from clinicalbert_tf import fileio


def is_loopback(host):
  """Whether `host` is a loopback address or `localhost`."""
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def read_token_file(path):
  """The bearer token in `path` (surrounding whitespace removed); InputError if empty/unreadable."""
  try:
    with open(path, encoding="utf-8") as f:
      token = f.read().strip()
  except (OSError, UnicodeDecodeError) as e:
    raise fileio.InputError("--auth_token_file=%s: cannot be read: %s" % (path, e)) from None
  if not token or any(c.isspace() for c in token):
    raise fileio.InputError("--auth_token_file=%s: expected one token without spaces" % path)
  return token


def bind(host, port):
  """A listening socket on host:port (port 0: a free port). Warns unless `host` is loopback."""
  if not is_loopback(host):
    logging.warning("--host=%s is not a loopback address: anyone who can reach this machine can "
                    "send notes to the server. Use --auth_token_file and a TLS reverse proxy.",
                    host)
  try:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
  except OSError as e:
    raise fileio.InputError("--host=%s --port=%d: cannot listen: %s" % (host, port, e)) from None
  sock.set_inheritable(True)
  return sock


def _config(app):
  return uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                        timeout_keep_alive=5)


class _Server(uvicorn.Server):
  """uvicorn's server, with SIGTERM / SIGINT starting a drain and not re-raised afterwards."""

  @contextlib.contextmanager
  def capture_signals(self):
    if threading.current_thread() is not threading.main_thread():
      yield
      return
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.signal(s, self.handle_exit) for s in signals}
    try:
      yield
    finally:
      for s, handler in previous.items():
        signal.signal(s, handler)

  def handle_exit(self, sig, frame):
    if not self.should_exit:
      logging.info("signal %d: no new connections; finishing the requests in flight", sig)
    super().handle_exit(sig, frame)


def run(app, sock):
  """Serves `app` on `sock` until SIGTERM or SIGINT, then drains and returns."""
  server = _Server(_config(app))
  server.run(sockets=[sock])
  logging.info("stopped")


class Background(object):
  """A server in a thread on a free loopback port: `with Background(app) as url: ...`."""

  def __init__(self, app, host="127.0.0.1"):
    self.sock = bind(host, 0)
    self.port = self.sock.getsockname()[1]
    self.url = "http://%s:%d" % (host, self.port)
    self.server = _Server(_config(app))
    self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                   daemon=True)

  def start(self, timeout=30.0):
    self.thread.start()
    waited = 0.0
    while not self.server.started and waited < timeout:
      self.thread.join(0.02)
      waited += 0.02
    if not self.server.started:
      raise RuntimeError("the server did not start within %gs" % timeout)
    return self.url

  def stop(self):
    """Drains like SIGTERM and waits for the thread."""
    self.server.should_exit = True
    self.thread.join()

  def __enter__(self):
    return self.start()

  def __exit__(self, *unused):
    self.stop()


def serve_model(model_dir, host, port, service_options, api_options, num_threads=0,
                bert_config_file=None, vocab_file=None, init_checkpoint=None,
                min_label_recall=None, use_bf16=False):
  """Binds first (a taken port costs no model load), loads the model once, serves until SIGTERM.

  With `min_label_recall`, a PHI model's recorded dev recall per type is logged first and weak
  types warned about, as deidentify.py does (`deid.release_check`).
  """
  from clinicalbert_tf import inference  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.serving import api  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.serving import service  # pylint: disable=g-import-not-at-top
  sock = bind(host, port)
  model = inference.load_model(model_dir, bert_config_file, vocab_file, init_checkpoint,
                               num_threads=num_threads, use_bf16=use_bf16)
  svc = service.Service(model, service_options)
  if min_label_recall is not None and svc.spans:
    from clinicalbert_tf.inference import deid  # pylint: disable=g-import-not-at-top
    deid.release_check(model_dir, svc.entity_types, min_label_recall)
  app = api.create_app(svc, api_options)
  family_host = "[%s]" % host if ":" in host else host
  # The line scripts and tests wait for (with --port=0 it names the port taken).
  logging.info("serving %s (%s) on http://%s:%d", model_dir, ", ".join(
      svc.entity_types) or "pairs", family_host, sock.getsockname()[1])
  run(app, sock)
