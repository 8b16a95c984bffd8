"""``emolib app``: the app alone as a web page (Voila on the notebook shipped here), for class demos.

One kernel per visitor; a pool of preheated kernels has the page ready before anyone asks; idle
kernels are shut down after ``cull_minutes``; each visitor's files go to a folder of their own
under ``out``. The page fetches nothing from the internet (the ``emolib`` Voila template drops
the lab template's CDN stylesheets; the app uses no icon fonts).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["APP_NOTEBOOK", "TEMPLATE_ROOT", "DEFAULT_OUT", "MAX_MESSAGE_BYTES", "voila_config", "serve"]

HERE = Path(__file__).resolve().parent
#: The notebook the page shows (one code cell: the app; sources stripped).
APP_NOTEBOOK = HERE / "app.ipynb"
#: A Jupyter data folder holding the ``emolib`` Voila template (added to ``JUPYTER_PATH``).
TEMPLATE_ROOT = HERE / "share"
DEFAULT_OUT = "emolib_app_out"
#: Websocket message limit: above the app's 25 MB photo limit (photos travel in chunks anyway).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def voila_config(*, host: str = "127.0.0.1", port: int = 8866, cull_minutes: float = 10.0, pool: int = 2,
                 open_browser: bool = False) -> Any:
    """The traitlets Config for Voila: template, no sources, preheated pool, culling, message size."""
    from traitlets.config import Config

    cfg = Config()
    cfg.Voila.ip = host
    cfg.Voila.port = port
    cfg.Voila.port_retries = 0  # the printed address must be the real one
    cfg.Voila.open_browser = open_browser
    cfg.Voila.tornado_settings = {"websocket_max_message_size": MAX_MESSAGE_BYTES}
    vc = cfg.VoilaConfiguration
    vc.template = "emolib"
    vc.theme = "light"
    vc.strip_sources = True
    vc.show_tracebacks = False
    vc.preheat_kernel = pool > 0
    vc.default_pool_size = max(pool, 0)
    km = cfg.MappingKernelManager
    km.cull_idle_timeout = max(int(cull_minutes * 60), 0)  # 0: never
    km.cull_interval = max(min(int(cull_minutes * 60) // 4, 60), 5)
    km.cull_connected = True  # an abandoned open tab frees its kernel too (reloading the page gets a new one)
    km.cull_busy = False
    return cfg


def serve(host: str = "127.0.0.1", port: int = 8866, out: str | os.PathLike = DEFAULT_OUT, *,
          cull_minutes: float = 10.0, pool: int = 2, open_browser: bool = False) -> int:
    """Serve the app page until interrupted (Ctrl-C); returns the exit status."""
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["EMOLIB_APP_OUT"] = str(out_dir)  # kernels inherit it: MusicApp writes there
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(var, "1")  # one kernel per visitor: many single-threaded kernels, not many thread pools
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(TEMPLATE_ROOT), os.environ.get("JUPYTER_PATH"))
                                                 if p)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"emolib app: WARNING: listening on {host}: anyone on this network (the classroom Wi-Fi) can open "
              f"the app, use this computer's CPU and memory and fill {out_dir}. The camera works only on "
              "http://localhost or https.", file=sys.stderr, flush=True)
    print(f"emolib app: http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/  "
          f"(files in {out_dir}; idle pages stop after {cull_minutes:g} min; Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    from voila.app import Voila

    app = Voila(config=voila_config(host=host, port=port, cull_minutes=cull_minutes, pool=pool,
                                    open_browser=open_browser))
    app.initialize([str(APP_NOTEBOOK)])
    app.start()
    return 0
