"""The server's command (commands/serve.py): its flags' checks, the listening socket,
--host's warning, --max_batch's default, --max_connections and the drain that SIGTERM
starts (what the server answers: tests/serve/test_serve_app.py)."""

import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import run_with_fakes
from fixtures import PROMPTS, Server, script_env
from gpt2tune import resources
from gpt2tune.commands import serve
from gpt2tune.errors import UserError
from gpt2tune.model.hparams import HParams


@pytest.mark.parametrize('flag, value', [
    ('--port', '-1'), ('--port', '65536'), ('--max_batch', '0'), ('--max_queue', '-1'),
    ('--max_connections', '0'), ('--drain_seconds', '-0.5')])
def test_a_flag_out_of_its_range_is_one_error(flag, value):
    with pytest.raises(UserError, match=f'^{re.escape(flag)} {re.escape(value)}: out of range$'):
        serve.parse_args([flag, value])


def test_the_ends_of_the_ranges_are_accepted():
    args = serve.parse_args(['--port', '0', '--max_batch', '1', '--max_queue', '0',
                             '--max_connections', '1', '--drain_seconds', '0'])
    assert (args.port, args.max_batch, args.max_queue, args.max_connections,
            args.drain_seconds) == (0, 1, 0, 1, 0)
    assert serve.parse_args(['--port', '65535']).port == 65535


def test_the_api_key_comes_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv('GPT2_SERVE_API_KEY', 'from-environment')
    assert serve.parse_args([]).api_key == 'from-environment'
    assert serve.parse_args(['--api_key', 'from-flag']).api_key == 'from-flag'
    monkeypatch.delenv('GPT2_SERVE_API_KEY')
    assert serve.parse_args([]).api_key is None


def test_an_empty_api_key_is_refused_from_the_flag_or_the_environment(monkeypatch):
    monkeypatch.delenv('GPT2_SERVE_API_KEY', raising=False)
    with pytest.raises(UserError, match='--api_key .* is empty'):
        serve.parse_args(['--api_key', ''])
    monkeypatch.setenv('GPT2_SERVE_API_KEY', '')
    with pytest.raises(UserError, match='--api_key .* is empty'):
        serve.parse_args([])


@pytest.mark.parametrize('host, others', [
    ('localhost', False), ('127.0.0.1', False), ('127.3.2.1', False), ('::1', False),
    ('0.0.0.0', True), ('::', True), ('192.168.1.20', True), ('203.0.113.7', True),
    ('gpu-box.local', True)])
def test_only_loopback_addresses_and_localhost_serve_this_machine_alone(host, others):
    assert serve.open_to_others(host) is others


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_listen_holds_the_host_and_port_asked_for():
    port = free_port()
    sock = serve.listen('127.0.0.1', port)
    try:
        assert sock.getsockname() == ('127.0.0.1', port)
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(('127.0.0.1', port))  # taken
    finally:
        sock.close()


def test_a_taken_port_is_one_error_naming_the_host_and_port():
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f'^--host 127.0.0.1 --port {port}: '):
            serve.listen('127.0.0.1', port)


# A row of the key/value caches of this shape: keys and values, 2 layers, 64 positions,
# 32 wide, 4 bytes each.
HPARAMS = HParams(n_vocab=100, n_ctx=64, n_embd=32, n_head=4, n_layer=2)
ROW = 2 * 2 * 64 * 32 * 4


@pytest.mark.parametrize('cores, memory, rows', [
    (3, 1 << 40, 24),  # eight rows a core it may use, memory to spare
    (64, 4 * 5 * ROW + 100, 5),  # as many rows as a quarter of the memory holds
    (64, 1000, 1)])  # not one row fits: one all the same
def test_the_default_max_batch(monkeypatch, cores, memory, rows):
    monkeypatch.setattr(resources, 'usable_cores', lambda: cores)
    monkeypatch.setattr(resources, 'physical_memory', lambda: memory)
    assert serve.default_max_batch(HPARAMS) == rows


@pytest.mark.slow  # starts the server
def test_serving_other_machines_without_a_key_is_warned_of(models_dir, server):
    s = Server(models_dir, '--host', '0.0.0.0')
    try:
        assert [line for line in s.lines if line.startswith(
            'warning: --host 0.0.0.0 serves other machines and no --api_key is set')]
    finally:
        s.stop()
    assert not [line for line in server.lines if line.startswith('warning:')]


@pytest.mark.slow  # starts the server
def test_connections_past_the_limit_get_503(models_dir):
    s = Server(models_dir, '--max_connections', '1')
    try:
        with socket.create_connection(('127.0.0.1', s.port), timeout=60):
            assert s.request('/health')[0] == 503
        deadline = time.monotonic() + 60  # the server notices the close; never a timed pass
        while s.request('/health')[0] != 200:
            assert time.monotonic() < deadline
    finally:
        s.stop()


@pytest.mark.slow  # starts the server
def test_sigterm_during_a_request_lets_it_finish_and_exits_0(slow_server):
    stream = slow_server.client().completions.create(
        model='tiny', prompt=PROMPTS[0], max_tokens=30, stream=True,
        stream_options={'include_usage': True}, extra_body={'stop_at_endoftext': False})
    chunks = iter(stream)
    slow_server.wait_for_line('fake: engine paused')
    slow_server.proc.send_signal(signal.SIGTERM)
    slow_server.wait_for_line('Draining')
    assert slow_server.request('/v1/completions', {'prompt': 'x'})[0] == 503
    slow_server.release.touch()
    rest = list(chunks)
    assert rest[-1].usage.completion_tokens == 30
    assert [c.finish_reason for r in rest for c in r.choices if c.finish_reason] == ['length']
    assert slow_server.proc.wait(timeout=60) == 0


def test_the_warm_up_decodes_on_the_engines_thread(models_dir, monkeypatch):
    """Every product of the server on one thread, the warm-up's too: where another thread
    ran the first parallel products and lived on (asyncio's executor), OpenMP kept its
    threads for it, and the engine's thread multiplied more slowly."""
    from gpt2tune.generate import engine, numpy_model
    from gpt2tune.model import model_dir
    from gpt2tune.serve import batching
    loaded = model_dir.load('tiny', models_dir)
    forward = numpy_model.Forward(model_dir.load_arrays(loaded.checkpoint, loaded.hparams),
                                  loaded.hparams, 'float32')
    threads = []

    def watched(real):
        def call(self, *args, **kwargs):
            threads.append(threading.current_thread().name)
            return real(self, *args, **kwargs)
        return call
    for name in ('prefill', 'step'):
        monkeypatch.setattr(numpy_model.Forward, name, watched(getattr(numpy_model.Forward,
                                                                       name)))
    server = batching.Engine(engine.Engine(forward, 2), max_queue=1)
    try:
        serve.start_engine(server, forward, loaded.encoder).result(timeout=60)
    finally:
        server.stop()
    assert threads == ['batching', 'batching']  # a prefill and a step


@pytest.mark.slow
def test_a_warm_up_that_fails_ends_the_server_with_its_error(models_dir):
    """Not a server that never says `Serving` and never exits."""
    result = subprocess.run(
        run_with_fakes.command('warm_up_fails=1', 'gpt2tune.commands.serve', '--models_dir',
                               models_dir, '--model_name', 'tiny', '--port', '0'),
        capture_output=True, text=True, env=script_env(), timeout=120)
    assert result.returncode != 0
    assert 'RuntimeError: fake: warm-up failed' in result.stderr
    assert 'Serving' not in result.stderr
