"""The server's HTTP side (Starlette): OpenAI's completions API over a batching.Engine,
with an access key, limits, Prometheus metrics and draining. serve.py builds and runs it.

    state = State(loaded, engine, 'run1', max_rows=16, api_key=None)
    app = make_app(state, allow_origins=['https://example.com'])  # CORS for those origins
    # state.ready once warmed up; state.draining at shutdown

    POST /v1/completions   GET /v1/models   POST /tokenize   POST /detokenize
    GET /health   GET /metrics      (those two without the key unless protect_metrics)
"""

import asyncio
import hmac
import json
import sys
import time
import uuid

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gpt2tune.serve import batching, completions
from gpt2tune.serve.completions import ApiError
from gpt2tune.serve.metrics import Metrics

MAX_BODY_BYTES = 1 << 20  # far above the largest prompt a context holds, in JSON


class State:
    """What the routes share."""

    def __init__(self, loaded, engine, model_id, *, max_rows, api_key, protect_metrics=False):
        self.loaded, self.engine, self.model_id = loaded, engine, model_id
        self.max_rows, self.api_key = max_rows, api_key
        # Load balancers and Prometheus send no key: /health never needs one, /metrics
        # only when asked.
        self.open_paths = {'/health'} if protect_metrics else {'/health', '/metrics'}
        self.metrics = Metrics(engine)
        self.ready = self.draining = False


def error_response(e):
    return JSONResponse(e.body(), e.status, headers=e.headers)


class Gate:
    """ASGI middleware before every route: 401 without the key (compared in constant
    time; /health and /metrics need none unless protect_metrics), 503 while warming up or
    draining (but /health, /metrics), 413 for a body whose Content-Length is over the
    limit, unread. Counts every answer by status."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)

        async def counted(message):
            if message['type'] == 'http.response.start':
                self.state.metrics.requests.labels(str(message['status'])).inc()
            await send(message)

        refusal = self.refusal(scope)
        if refusal:
            return await error_response(refusal)(scope, receive, counted)
        await self.app(scope, receive, counted)

    def refusal(self, scope):
        headers = dict(scope['headers'])
        if self.state.api_key is not None and scope['path'] not in self.state.open_paths:
            # HTTP's authentication schemes are case-insensitive (RFC 9110, 11.1).
            scheme, _, given = headers.get(b'authorization', b'').strip().partition(b' ')
            if scheme.lower() != b'bearer' or not hmac.compare_digest(
                    given.strip(), self.state.api_key.encode()):
                return ApiError(401, 'missing or wrong API key (Authorization: Bearer ...)',
                                code='invalid_api_key', headers={'WWW-Authenticate': 'Bearer'})
        if scope['path'] not in ('/health', '/metrics') and not self.state.ready:
            why = 'shutting down' if self.state.draining else 'warming up'
            return ApiError(503, f'the server is {why}', code='unavailable',
                            kind='server_error', headers={'Retry-After': '1'})
        if scope['path'] not in ('/health', '/metrics') and self.state.engine.dead:
            return engine_failed()
        length = headers.get(b'content-length', b'0')
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            return ApiError(413, f'the body is over {MAX_BODY_BYTES} bytes',
                            code='body_too_large')
        if scope['path'] == '/v1/completions' and self.state.engine.full():
            return queue_full()  # whatever the body asks, before it is read
        return None


def queue_full():
    return ApiError(429, 'too many requests are waiting; try again shortly',
                    code='queue_full', kind='rate_limit_error', headers={'Retry-After': '1'})


def engine_failed():
    return ApiError(503, 'the decoding engine failed; the server must be restarted',
                    code='engine_failed', kind='server_error')


async def read_json(request):
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_BODY_BYTES:  # sent without a Content-Length
            raise ApiError(413, f'the body is over {MAX_BODY_BYTES} bytes',
                           code='body_too_large')
    try:
        return json.loads(body, parse_constant=_not_json)
    except ValueError as e:
        raise ApiError(400, f'the body is not valid JSON: {e}') from None


def _not_json(name):
    """Python's json takes NaN, Infinity and -Infinity; JSON (RFC 8259) has no such
    values."""
    raise ValueError(f'{name} is not a JSON value')


async def create_completion(request):
    state = request.app.state.server
    body = await read_json(request)
    # Encoding a long prompt takes milliseconds: off the event loop, which serves streams.
    req = await asyncio.to_thread(completions.parse, body, state.loaded, state.model_id,
                                  state.max_rows)
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    job = batching.Job(req.prompts, req.n, req.options, req.seed, state.loaded.encoder,
                       lambda *e: loop.call_soon_threadsafe(events.put_nowait, e),
                       logprobs=req.logprobs, prompt_logprobs=req.prompt_logprobs,
                       generate=req.generate)
    try:
        state.engine.submit(job)
    except batching.QueueFull:
        raise queue_full() from None
    except batching.EngineDead:
        raise engine_failed() from None
    run = Run(state, req, job, events)
    if req.stream:
        # The background task runs once the response ends however it ended: under an
        # ASGI server of spec 2.4, Starlette stops watching for the client's disconnect,
        # and a stream that never sent an event would never see it leave.
        return StreamingResponse(run.stream(), media_type='text/event-stream',
                                 background=BackgroundTask(run.cancel))
    if not await run.wait(request.receive):
        return Response(status_code=499)  # nobody is listening any more
    if job.error is not None:
        raise run.fault()
    return JSONResponse(completions.completion(run.id, state.model_id, run.created, req,
                                               job.rows, state.loaded.encoder))


class Run:
    """One request's events from the engine, as an answer, and its timings."""

    def __init__(self, state, req, job, events):
        self.state, self.req, self.job, self.events = state, req, job, events
        self.id, self.created = f'cmpl-{uuid.uuid4().hex}', int(time.time())
        self.start, self.first = time.perf_counter(), None

    async def next_event(self):
        """(pieces, ended, finished) of the job's next step (batching.Job)."""
        pieces, ended, finished = await self.events.get()
        metrics, now = self.state.metrics, time.perf_counter()
        if self.first is None:
            self.first = now
            metrics.first_token.observe(now - self.start)
        if finished:
            metrics.latency.observe(now - self.start)
        return pieces, ended, finished

    async def wait(self, receive):
        """Whether the job ended with the client still there (else it is cancelled)."""
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            while True:
                event = asyncio.ensure_future(self.next_event())
                await asyncio.wait({event, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not event.done():
                    event.cancel()
                    self.cancel()
                    return False
                if event.result()[2]:
                    return True
        finally:
            gone.cancel()

    async def stream(self):
        """Server-sent events: OpenAI's chunks, one choice each, a choice's
        finish_reason as soon as it ends; then `data: [DONE]`. A cut by the drain or a
        fault is said by an error event before it."""
        def sse(choices, usage=None):
            body = completions.chunk(self.id, self.state.model_id, self.created, choices,
                                     usage)
            return f'data: {json.dumps(body)}\n\n'
        rows, encoder = self.job.rows, self.state.loaded.encoder
        scored = self.req.logprobs is not None
        given = [0] * len(rows)  # tokens whose figures were sent, by choice
        sent = [''] * len(rows)  # text sent, by choice
        try:
            finished, reasons, echoed = False, set(), not self.req.echo
            while not finished:
                pieces, ended, finished = await self.next_event()
                if not echoed:  # after the first step: the prompts' figures are in
                    echoed = True
                    for r in rows:
                        sent[r.index] = self.req.texts[r.index // self.req.n]
                        figures = None
                        if scored:
                            figures = completions.logprobs_of(
                                r.prompt, r.prompt_logprobs or [None] * len(r.prompt),
                                encoder)
                        yield sse([(r.index, sent[r.index], None, figures)])
                for index, text, tokens in pieces:
                    figures = None
                    if scored:
                        r = rows[index]
                        before = [*(r.prompt if self.req.echo else ()),
                                  *r.new[:given[index]]]
                        figures = completions.logprobs_of(
                            r.new[given[index]:tokens], r.logprobs[given[index]:tokens],
                            encoder, before)
                        given[index] = tokens
                    sent[index] += text
                    yield sse([(index, text, None, figures)])
                for index, reason in ended:
                    yield sse([(index, '', reason)])
                    reasons.add(reason)
            if self.req.include_usage:
                yield sse([], completions.usage(self.req, self.job.rows))
            problem = self.problem(reasons)
            if problem is not None:
                yield f'data: {json.dumps(problem.body())}\n\n'
            yield 'data: [DONE]\n\n'
        finally:
            self.cancel()  # the client went away (nothing once the job has ended)

    def fault(self):
        """The ApiError of a job the engine failed: its thread died, or a step raised."""
        if self.state.engine.dead:
            return engine_failed()
        return ApiError(500, 'internal error', kind='server_error')

    def problem(self, reasons):
        """The ApiError to tell a stream whose rows were cut, else None."""
        if self.job.error is not None:
            return self.fault()
        if 'abort' in reasons:
            return ApiError(503, 'the server is shutting down: the answer was cut short',
                            code='shutting_down', kind='server_error')
        return None

    def cancel(self):
        """The client went away: the job's rows leave at the engine's next step."""
        if self.job.live() and not self.job.cancelled:
            self.state.metrics.cancelled.inc()
        self.job.cancel()


async def _disconnected(receive):
    while (await receive())['type'] != 'http.disconnect':
        pass


async def list_models(request):
    state = request.app.state.server
    return JSONResponse({'object': 'list', 'data': [{
        'id': state.model_id, 'object': 'model', 'created': 0, 'owned_by': 'user'}]})


async def tokenize(request):
    """vLLM's /tokenize: {"prompt": text} -> the model's token ids for it."""
    state = request.app.state.server
    body = await read_json(request)
    completions.check_model(body, state.model_id)
    tokens = completions.tokenize(body, state.loaded)
    return JSONResponse({'tokens': tokens, 'count': len(tokens),
                         'max_model_len': state.loaded.hparams.n_ctx})


async def detokenize(request):
    """vLLM's /detokenize: {"tokens": ids} -> the text they decode to."""
    state = request.app.state.server
    body = await read_json(request)
    completions.check_model(body, state.model_id)
    return JSONResponse({'prompt': completions.detokenize(body, state.loaded)})


async def health(request):
    state = request.app.state.server
    if state.engine.dead:
        return JSONResponse({'status': 'engine failed'}, 503)
    if state.ready:
        return JSONResponse({'status': 'ok'})
    status = 'draining' if state.draining else 'warming up'
    return JSONResponse({'status': status}, 503)


async def metrics(request):
    body, media_type = request.app.state.server.metrics.exposition()
    return Response(body, media_type=media_type)


async def api_error(request, e):
    return error_response(e)


async def http_error(request, e):
    return error_response(ApiError(e.status_code, f'{request.method} {request.url.path}: '
                                   f'{e.detail}', code='not_found' if e.status_code == 404
                                   else None))


async def fault(request, e):
    print(f'serve: {request.method} {request.url.path}: {e!r}', file=sys.stderr)
    return error_response(ApiError(500, 'internal error', kind='server_error'))


def make_app(state, allow_origins=()):
    """The app; web pages from `allow_origins` may call it (CORS), their preflight
    OPTIONS answered before the key is asked for."""
    app = Starlette(routes=[
        Route('/v1/completions', create_completion, methods=['POST']),
        Route('/v1/models', list_models), Route('/health', health),
        Route('/tokenize', tokenize, methods=['POST']),
        Route('/detokenize', detokenize, methods=['POST']),
        Route('/metrics', metrics)],
        exception_handlers={ApiError: api_error, HTTPException: http_error,
                            Exception: fault})
    app.state.server = state
    app.add_middleware(Gate, state=state)
    if allow_origins:  # added last: the outermost, before the key is asked for
        app.add_middleware(CORSMiddleware, allow_origins=list(allow_origins),
                           allow_methods=['GET', 'POST'],
                           allow_headers=['Authorization', 'Content-Type'])
    return app
