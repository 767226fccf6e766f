"""download_model.sh against a local server that speaks HTTP ranges, as blob storage does."""

import http.server
import os
import socket
import subprocess
import threading

import pytest

from fixtures import ROOT

FILES = ['checkpoint', 'encoder.json', 'hparams.json', 'model.ckpt.data-00000-of-00001',
         'model.ckpt.index', 'model.ckpt.meta', 'vocab.bpe']


class RangeHandler(http.server.BaseHTTPRequestHandler):
    files = {}  # url path -> bytes
    log = []  # (method, path, range header)
    truncate = set()  # paths whose body is cut short

    def do_HEAD(self):
        self._respond(body=False)

    def do_GET(self):
        self._respond(body=True)

    def _respond(self, body):
        self.log.append((self.command, self.path, self.headers.get('Range')))
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if body and self.headers.get('Range'):
            start = int(self.headers['Range'].split('=')[1].split('-')[0])
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        else:
            self.send_response(200)
        self.send_header('Content-Length', str(len(data) - start))
        self.end_headers()
        if body:
            payload = data[start:]
            if self.path in self.truncate:
                payload = payload[:len(payload) // 2]
                self.wfile.write(payload)
                self.close_connection = True
                return
            self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    RangeHandler.files = {f'/124M/{name}': os.urandom(3000 + 7 * i)
                          for i, name in enumerate(FILES)}
    RangeHandler.log, RangeHandler.truncate = [], set()
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()


def download(tmp_path, url, name='117M'):
    env = dict(os.environ, MODELS_DIR=str(tmp_path / 'models'), GPT2_DOWNLOAD_URL=url)
    return subprocess.run(['sh', os.path.join(ROOT, 'download_model.sh'), name], env=env,
                          capture_output=True, text=True, timeout=120)


def test_alias_downloads_124m_under_the_name_typed(tmp_path, server):
    result = download(tmp_path, server)
    assert result.returncode == 0, result.stderr
    for name in FILES:
        assert (tmp_path / 'models' / '117M' / name).read_bytes() == \
            RangeHandler.files[f'/124M/{name}']


def test_rerun_skips_complete_files(tmp_path, server):
    download(tmp_path, server)
    RangeHandler.log.clear()
    result = download(tmp_path, server)
    assert result.returncode == 0
    assert RangeHandler.log == []
    assert result.stdout.count('already downloaded') == len(FILES)


def test_partial_file_is_resumed_with_a_range_request(tmp_path, server):
    data = RangeHandler.files['/124M/vocab.bpe']
    (tmp_path / 'models' / '117M').mkdir(parents=True)
    (tmp_path / 'models' / '117M' / 'vocab.bpe.part').write_bytes(data[:1000])
    assert download(tmp_path, server).returncode == 0
    assert (tmp_path / 'models' / '117M' / 'vocab.bpe').read_bytes() == data
    assert ('GET', '/124M/vocab.bpe', 'bytes=1000-') in RangeHandler.log


def test_cut_transfer_never_gets_the_final_name(tmp_path, server):
    RangeHandler.truncate = {'/124M/model.ckpt.index'}
    result = download(tmp_path, server)
    assert result.returncode != 0
    assert 'run the same command again to resume' in result.stderr
    assert not (tmp_path / 'models' / '117M' / 'model.ckpt.index').exists()
    RangeHandler.truncate = set()
    assert download(tmp_path, server).returncode == 0
    assert (tmp_path / 'models' / '117M' / 'model.ckpt.index').read_bytes() == \
        RangeHandler.files['/124M/model.ckpt.index']


def test_unknown_model_name(tmp_path, server):
    result = download(tmp_path, server, name='999M')
    assert result.returncode == 2
    assert "unknown model '999M'" in result.stderr
    assert not (tmp_path / 'models').exists()


def test_no_network_is_a_clear_failure(tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        closed_port = s.getsockname()[1]
    result = download(tmp_path, f'http://127.0.0.1:{closed_port}', name='355M')
    assert result.returncode == 1
    assert 'cannot reach' in result.stderr and 'no network?' in result.stderr
