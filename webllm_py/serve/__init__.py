"""`webllm-py serve`: a static server for bundles, the JS package and the demo page,
plus an optional OpenAI-compatible REST API over the native (or reference) runtime.

    from webllm_py.serve import make_app, serve
    app = make_app("dist/", api_models={"smollm2": Engine("dist/smollm2")}, cors="*")
    serve(app, "127.0.0.1", 8000)

app.py: URL layout, options, running; access.py: CORS, Host names, cross-origin
API calls, the API key; static.py (+ ranges.py): file serving (MIME, caching, Range,
gzip, confinement); api.py: the /v1 routes, over body.py / fields.py (request
checks), worker.py / cancel.py (per-model threads, cancellation) and errors.py.
"""

from .app import RunningServer, discover_bundles, make_app, print_banner, serve, start_in_thread

__all__ = ["make_app", "discover_bundles", "serve", "start_in_thread", "RunningServer", "print_banner"]
