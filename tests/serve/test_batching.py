"""The server's engine thread on the tiny model, in each precision: requests sharing
steps, joining late or cancelled each give what the API gives alone for the same seed."""

import os
import threading

import pytest

from gpt2tune.generate import engine, generation, numpy_model
from gpt2tune.model import model_dir
from gpt2tune.serve import batching

PROMPTS = ['Why did the chicken cross the road?|', 'Knock knock|',
           'A man walks into a bar and orders a drink from the bartender|']


@pytest.fixture(scope='module', params=['float32', 'bfloat16', 'int8'])
def gpt2(models_dir, request):
    g = generation.GPT2.load(os.path.join(models_dir, 'tiny'), precision=request.param)
    yield g
    g.close()


def new_engine(gpt2, max_rows, max_queue=8):
    arrays = model_dir.load_arrays(gpt2.model.checkpoint, gpt2.hparams)
    forward = numpy_model.Forward(arrays, gpt2.hparams, gpt2.precision)
    return batching.Engine(engine.Engine(forward, max_rows), max_queue=max_queue)


def new_job(gpt2, prompt, n, seed, listener=None, **options):
    """A Job of `prompt` (a text, or a list of texts) whose `done` is set at its last
    event; listener(pieces, ended, finished) hears each event first."""
    done = threading.Event()

    def on_event(pieces, ended, finished):
        if listener is not None:
            listener(pieces, ended, finished)
        if finished:
            done.set()
    prompts = [prompt] if isinstance(prompt, str) else prompt
    job = batching.Job([gpt2.encode(p) for p in prompts], n, gpt2.options(**options), seed,
                       gpt2.encoder, on_event)
    job.done = done
    return job


def run(server, *jobs):
    """Submit `jobs` in order, start the engine's thread, wait for each one's last event,
    stop."""
    for job in jobs:
        server.submit(job)
    server.start()
    try:
        for job in jobs:
            assert job.done.wait(60)
    finally:
        server.stop()


def alone(models_dir, gpt2, prompt, n, seed, **options):
    """The API's samples for the same seed, one row at a time."""
    g = generation.GPT2.load(os.path.join(models_dir, 'tiny'), seed=seed, batch_size=1,
                             precision=gpt2.precision)
    try:
        return g.generate(prompt, nsamples=n, return_tokens=True, **options)
    finally:
        g.close()


def test_requests_sharing_steps_each_equal_the_api_alone(models_dir, gpt2):
    settings = [dict(length=12, top_p=0.9), dict(length=30, stop=['e'], top_k=5),
                dict(length=7, temperature=2.0, repetition_penalty=1.5)]
    server = new_engine(gpt2, max_rows=6)
    jobs = [new_job(gpt2, p, 2, seed, **o) for seed, (p, o) in
            enumerate(zip(PROMPTS, settings, strict=True))]
    run(server, *jobs)
    for seed, (prompt, options, job) in enumerate(zip(PROMPTS, settings, jobs, strict=True)):
        assert [r.new[:r.end[0]] for r in job.rows] == alone(models_dir, gpt2, prompt, 2, seed,
                                                              **options)


def test_window_slides_past_the_context_as_the_api_does(models_dir, gpt2):
    length = gpt2.hparams.n_ctx + 10
    server = new_engine(gpt2, max_rows=3)
    short = new_job(gpt2, PROMPTS[1], 1, 3, length=5)
    long = new_job(gpt2, PROMPTS[0], 2, 4, length=length, stop_at_endoftext=False)
    run(server, long, short)
    assert [r.new for r in long.rows] == alone(models_dir, gpt2, PROMPTS[0], 2, 4, length=length,
                                               stop_at_endoftext=False)
    assert [r.finish_reason for r in long.rows] == ['length', 'length']


def test_a_request_of_two_prompts_and_n_2_equals_the_apis_rows_in_order(models_dir, gpt2):
    job = new_job(gpt2, PROMPTS[:2], 2, 5, length=9)
    run(new_engine(gpt2, max_rows=4), job)
    g = generation.GPT2.load(os.path.join(models_dir, 'tiny'), seed=5, batch_size=4,
                             precision=gpt2.precision)
    try:
        api = g.generate(PROMPTS[:2], nsamples=2, length=9, return_tokens=True)
    finally:
        g.close()
    assert [r.new[:r.end[0]] for r in job.rows] == api


def test_full_queue_is_refused_and_cancelled_job_frees_its_rows(gpt2):
    server = new_engine(gpt2, max_rows=1, max_queue=1)
    first, second = (new_job(gpt2, PROMPTS[i], 1, 0, length=10) for i in range(2))
    server.submit(first)  # the one row is free: it waits for nothing
    server.submit(second)  # waits for the row
    assert server.queued() == 1
    with pytest.raises(batching.QueueFull):
        server.submit(new_job(gpt2, PROMPTS[2], 1, 0, length=10))
    first.cancel()
    second.cancel()
    server.start()
    try:
        assert first.done.wait(60) and second.done.wait(60)
        assert server.rows() == 0 and not server.busy()
    finally:
        server.stop()


def test_stopping_cuts_a_request_still_prefilling_its_prompt(gpt2, monkeypatch):
    """A prompt in chunks of 4: stopped after its first chunk, the request ends 'abort'
    at once instead of prefilling and decoding on."""
    monkeypatch.setattr(engine, 'PREFILL_CHUNK', 4)
    server = new_engine(gpt2, max_rows=1)
    job = new_job(gpt2, PROMPTS[2], 1, 0, length=10)
    server.submit(job)
    server.core.add(job.request)  # as the engine's thread takes it, without the thread
    server.queue.clear()
    server.core.step()
    assert server.core.prefilling == [job.request]
    server.stop()  # the thread never started: the cut waits for the next step
    server.core.step()
    assert job.done.is_set() and job.rows[0].finish_reason == 'abort'
    assert job.rows[0].new == [] and not server.core.busy()



def test_a_warm_up_that_fails_ends_the_thread_and_fails_what_waits(gpt2):
    """Its fault goes to whoever waits for the start; a job that came meanwhile fails
    at once, and a later one is refused (EngineDead), none left waiting."""
    server = new_engine(gpt2, max_rows=2)
    waiting = new_job(gpt2, PROMPTS[0], 1, 0, length=3)
    server.submit(waiting)

    def warm_up():
        raise RuntimeError('warm-up failed')
    started = server.start(warm_up)
    assert isinstance(started.exception(timeout=60), RuntimeError)
    assert waiting.done.wait(60) and isinstance(waiting.error, RuntimeError)
    with pytest.raises(batching.EngineDead):
        server.submit(new_job(gpt2, PROMPTS[1], 1, 0, length=3))
    server.stop()


def test_a_start_given_up_before_the_warm_up_ends_the_thread(gpt2):
    """The wait for the start cancelled first (a second Ctrl-C): the thread ends without
    warming up or failing on the cancelled wait, and refuses jobs."""
    server = new_engine(gpt2, max_rows=2)
    warmed = []
    server.warmed_up.cancel()
    server.start(lambda: warmed.append(True))
    server.thread.join(60)
    assert not server.thread.is_alive() and warmed == []
    with pytest.raises(batching.EngineDead):
        server.submit(new_job(gpt2, PROMPTS[1], 1, 0, length=3))


def test_a_jobs_tokens_are_counted_before_its_listener_hears_of_them(gpt2):
    counted, heard = [0], []
    server = new_engine(gpt2, max_rows=4)
    server.on_tokens = lambda n: counted.__setitem__(0, counted[0] + n)
    job = new_job(gpt2, PROMPTS[1], 2, 0, length=5, listener=lambda *event: heard.append(
        (counted[0], sum(len(r.new) for r in job.rows))))
    run(server, job)
    assert heard and all(c == n for c, n in heard)
