"""OpenAI's completions API over HTTP: the engine's server thread (batching.py), the
protocol (completions.py) and the app (serve_app.py)."""
