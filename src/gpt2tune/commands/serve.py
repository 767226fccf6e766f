"""Serve a model over HTTP with OpenAI's completions API, batching concurrent requests
as they come (continuous batching), streaming, with limits, metrics and a clean stop.

    gpt2tune-serve --models_dir models --model_name 124M        # or: make serve
    gpt2tune-serve --models_dir checkpoint --model_name run1 --port 8080
    curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \
        -d '{"prompt": "Knock knock|", "max_tokens": 40, "temperature": 0.7}'

The first SIGTERM or Ctrl-C turns new requests away (503) and lets those in flight
finish for up to --drain_seconds, then exits 0; a second Ctrl-C stops at once.
docs/serving.md has the flags, the openai client and TLS.
"""

import asyncio
import ipaddress
import os
import signal
import socket
import sys

from gpt2tune import cli, errors, flags

API_KEY_VARIABLE = 'GPT2_SERVE_API_KEY'
# Rows per core a step's weight products keep busy: the default --max_batch, as far as
# the key/value caches fit in a quarter of the memory.
ROWS_PER_CORE = 8


def parse_args(argv):
    parser = cli.FlagParser(prog='gpt2tune-serve', description=__doc__.split('\n')[0])
    add = parser.add_argument
    flags.add(parser, 'models_dir', 'model_name', 'checkpoint', 'precision')
    add('--host', default='127.0.0.1', help='0.0.0.0 serves every network: see docs/serving.md')
    add('--port', type=int, default=8000)
    add('--max_batch', type=int, help='rows decoded together (default: from the machine)')
    add('--max_queue', type=int, default=64,
        help='requests that may wait for rows; one more gets 429 (0: none waits)')
    add('--api_key', default=os.environ.get(API_KEY_VARIABLE),
        help=f'require "Authorization: Bearer KEY" (default: ${API_KEY_VARIABLE})')
    add('--max_connections', type=int, default=1000,
        help='connections served at once; one more gets 503 at once')
    add('--protect_metrics', action='store_true',
        help='/metrics needs the key too (/health never does)')
    add('--allow_origin', action='append', default=[], metavar='ORIGIN',
        help='a web page\'s origin that may call the API (CORS), e.g. https://example.com; '
             'repeat for more, * for any')
    add('--drain_seconds', type=float, default=30,
        help='after SIGTERM or Ctrl-C, time given to requests in flight')
    flags.add(parser, 'verbose')
    args = parser.parse_args(argv)
    for name, least in (('port', 0), ('max_batch', 1), ('max_queue', 0),
                        ('max_connections', 1), ('drain_seconds', 0)):
        value = getattr(args, name)
        if value is not None and value < least or name == 'port' and value > 65535:
            raise errors.UserError(f'--{name} {value}: out of range')
    if args.api_key == '':
        raise errors.UserError(f'--api_key (or ${API_KEY_VARIABLE}) is empty')
    return args


def open_to_others(host):
    """Whether --host serves more than this machine (names other than localhost count)."""
    if host == 'localhost':
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def listen(host, port):
    """The listening socket, bound before the model loads, so a taken port is said first."""
    try:
        family = socket.AF_INET6 if ':' in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        raise errors.UserError(f'--host {host} --port {port}: {e.strerror}') from None
    return sock


def default_max_batch(hparams):
    from gpt2tune import resources
    row_bytes = 2 * hparams.n_layer * hparams.n_ctx * hparams.n_embd * 4  # keys, values
    fits = resources.physical_memory() // 4 // row_bytes
    return max(1, min(ROWS_PER_CORE * resources.usable_cores(), fits))


def start_engine(server, forward, encoder):
    """Start the server's engine (batching.Engine) with one short row through the model
    first, on the engine's thread (the first products, compilations and allocations are
    slow): a concurrent.futures.Future, done once the row is, with its error if it
    failed."""
    import numpy as np

    from gpt2tune.generate import numpy_model

    def warm_up():
        cache = numpy_model.Cache(forward.hparams, 1, 2)
        logits = forward.prefill(cache, 0, [encoder.eot_token])
        forward.step(cache, [0], [int(np.argmax(logits))])
    return server.start(warm_up)


def main(argv):
    args = parse_args(argv)
    sock = listen(args.host, args.port)
    if args.api_key is None and open_to_others(args.host):
        print(f'warning: --host {args.host} serves other machines and no --api_key is set: '
              'anyone who reaches this port can use the model', file=sys.stderr)
    cli.start_tensorflow(args.verbose)
    import uvicorn

    from gpt2tune.generate import engine, kernels, numpy_model
    from gpt2tune.model import model_dir
    from gpt2tune.serve import batching, serve_app
    loaded = model_dir.load(args.model_name, args.models_dir, args.checkpoint)
    max_batch = args.max_batch or default_max_batch(loaded.hparams)
    precision, reason = kernels.choose_precision(args.precision)
    print(f'Loading {loaded.checkpoint}', file=sys.stderr)
    arrays = model_dir.load_arrays(loaded.checkpoint, loaded.hparams)
    forward = numpy_model.Forward(arrays, loaded.hparams, precision)
    del arrays
    print(kernels.decoding_line(forward.kernel, reason), file=sys.stderr)
    server = batching.Engine(engine.Engine(forward, max_batch), max_queue=args.max_queue)
    state = serve_app.State(loaded, server, args.model_name, max_rows=max_batch,
                            api_key=args.api_key, protect_metrics=args.protect_metrics)

    async def start():
        await asyncio.wrap_future(start_engine(server, forward, loaded.encoder))
        state.ready = True
        host = f'[{args.host}]' if ':' in args.host else args.host
        print(f'Serving {args.model_name} on http://{host}:{sock.getsockname()[1]} '
              f'(--max_batch {max_batch})', file=sys.stderr, flush=True)

    app = serve_app.make_app(state, args.allow_origin)
    # uvicorn answers 503 once its connections, the new one counted, reach the limit.
    config = uvicorn.Config(app, http='h11', lifespan='off',
                            log_level='info' if args.verbose else 'warning',
                            access_log=args.verbose, timeout_graceful_shutdown=5,
                            limit_concurrency=args.max_connections + 1)
    DrainingServer(config, state, args.drain_seconds, start).run(sockets=[sock])


class DrainingServer:
    """uvicorn's server, stopped by draining: see the module's docstring."""

    def __init__(self, config, state, drain_seconds, start):
        import uvicorn
        self.server = uvicorn.Server(config)
        self.server.handle_exit = self.handle_exit
        self.state, self.drain_seconds, self.start = state, drain_seconds, start
        self.loop = self.drain = self.failed = None

    def run(self, sockets):
        asyncio.run(self.serve(sockets))

    async def serve(self, sockets):
        self.loop = asyncio.get_running_loop()
        starting = asyncio.ensure_future(self.start())
        starting.add_done_callback(self.started)
        await self.server.serve(sockets=sockets)
        starting.cancel()
        await asyncio.to_thread(self.state.engine.stop)
        if self.failed is not None:  # a server that cannot start must not wait for ever
            raise self.failed

    def started(self, starting):
        if not starting.cancelled() and starting.exception() is not None:
            self.failed = starting.exception()
            self.server.should_exit = True

    def handle_exit(self, sig, frame):
        if self.drain is not None or self.loop is None:
            self.server.should_exit = True
            self.server.force_exit = sig == signal.SIGINT
            return
        self.drain = True
        self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.drained()))

    async def drained(self):
        """Turn requests away; wait for those in flight, then stop the server."""
        self.state.ready, self.state.draining = False, True
        print('Draining: requests in flight may finish', file=sys.stderr, flush=True)
        deadline = self.loop.time() + self.drain_seconds
        while self.state.engine.busy() and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(self.state.engine.stop)
        self.server.should_exit = True


if __name__ == '__main__':
    cli.run(main, sys.argv[1:])
