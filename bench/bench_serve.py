#!/usr/bin/env python3
"""The server's throughput and latency under concurrent clients, against the same
requests sent one at a time and against the API in the same run; and its memory over
many requests.

- the 124M shape in each `--precision`, 1, 4 and 16 clients at once, each a different
  prompt and 128 new tokens (streamed): aggregate tokens/s, time to first token and
  latency (p50, p95); the baselines are the 16 requests one after another, and the API
  (the same engine, no HTTP) at batch 1 and 16 on the same prompts;
- 16 clients as a server sees them in use: each sends --rounds requests one after
  another, the first ones spread over the time of one request alone, so requests
  arrive while others run (a burst of 16 at the same moment waits for all 16 prompts'
  prefill, a compute-bound pass 16 times one prompt's);
- a 1,000-token prompt joining while one stream runs: the longest gap between two of the
  stream's tokens while it joins, against the stream's median gap before (prefilled in
  chunks, the gap is a chunk's prefill and a step, not the whole prompt's);
- RSS of the server after 10,000 short requests against after the first 100, on the
  tiny shape (the 124M shape would take an hour of requests; what leaks per request
  does not depend on the model's size).

    PYTHONPATH=src python bench/bench_serve.py [--clients 1 4 16] [--requests 10000]
        [--precision float32 bfloat16]
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

from common import ROOT, random_model, report

from gpt2tune.generate import generation

WORDS = ('chicken road bar horse doctor lawyer priest rabbi duck cow dog cat fish '
         'elephant penguin wizard').split()


class Server:
    def __init__(self, name, models_dir, *flags):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'gpt2tune.commands.serve', '--models_dir',
             models_dir, '--model_name', name, '--port', str(self.port), *flags],
            stderr=subprocess.PIPE, text=True, env=dict(
                os.environ, PYTHONPATH=os.path.join(ROOT, 'src')))
        for line in self.proc.stderr:
            if line.startswith('Serving'):
                break
        else:
            sys.exit(f'bench: serve.py exited {self.proc.wait()}')

    def complete(self, prompt, max_tokens):
        """(seconds to the first token, seconds to the end, tokens) of a streamed request."""
        body = json.dumps({'prompt': prompt, 'max_tokens': max_tokens, 'stream': True,
                           'stop_at_endoftext': False, 'top_k': 40,
                           'stream_options': {'include_usage': True}})
        start = time.perf_counter()
        connection = http.client.HTTPConnection('127.0.0.1', self.port, timeout=600)
        connection.request('POST', '/v1/completions', body,
                           {'Content-Type': 'application/json'})
        answer = connection.getresponse()
        first, tokens = None, 0
        for line in answer:
            if not line.startswith(b'data: {'):
                continue
            event = json.loads(line[6:])
            if first is None and any(c['text'] for c in event['choices']):
                first = time.perf_counter() - start
            if 'usage' in event:
                tokens = event['usage']['completion_tokens']
        connection.close()
        return first, time.perf_counter() - start, tokens

    def rss_mb(self):
        with open(f'/proc/{self.proc.pid}/status', encoding='utf-8') as f:
            return next(int(line.split()[1]) for line in f if line.startswith('VmRSS')) / 1024

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def stream_times(port, prompt, max_tokens, times):
    """Stream a completion, appending the time of each text event to `times`."""
    body = json.dumps({'prompt': prompt, 'max_tokens': max_tokens, 'stream': True,
                       'stop_at_endoftext': False})
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=600)
    connection.request('POST', '/v1/completions', body, {'Content-Type': 'application/json'})
    for line in connection.getresponse():
        if line.startswith(b'data: {') and any(c['text'] for c in
                                               json.loads(line[6:])['choices']):
            times.append(time.perf_counter())
    connection.close()


def long_prompt_join(precision, prompt_tokens=1000, before=20, tokens=200):
    """The longest gap between a running stream's tokens while a long prompt joins."""
    models_dir, name = random_model('124M')
    server = Server(name, models_dir, '--max_batch', '2', '--precision', precision)
    try:
        server.complete('warm up', 4)
        times = []
        stream = threading.Thread(target=stream_times,
                                  args=(server.port, 'A long story:', tokens, times))
        stream.start()
        while len(times) < before:
            time.sleep(0.001)
        sent = time.perf_counter()
        joined = server.complete([(i * 37) % 50000 for i in range(prompt_tokens)], 1)
        done = sent + joined[1]
        stream.join()
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        usual = statistics.median(gaps[:before - 1])
        during = [b - a for a, b in zip(times, times[1:], strict=False) if b > sent and a < done]
        report('serve_longest_gap_while_a_long_prompt_joins_s', max(during), 's',
               precision=precision, prompt_tokens=prompt_tokens,
               usual_gap_s=round(usual, 4), ratio_vs_usual_gap=round(max(during) / usual, 1),
               joining_request_s=round(joined[1], 3))
    finally:
        server.stop()


def prompts(count):
    return [f'A {WORDS[i % len(WORDS)]} and a {WORDS[(i * 7 + 3) % len(WORDS)]} walk into '
            f'bar number {i}.|' for i in range(count)]


def percentile(values, p):
    return statistics.quantiles(values, n=100, method='inclusive')[p - 1]


def run_clients(server, texts, clients, max_tokens):
    """(wall seconds, [(first, total, tokens)]) of `texts`, `clients` at a time."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda t: server.complete(t, max_tokens), texts))
    return time.perf_counter() - start, results


def steady_clients(server, texts, clients, rounds, max_tokens, spread):
    """(wall seconds, [(first, total, tokens)]): `clients` each sending `rounds` of
    `texts` one after another, client i starting at i * spread / clients."""
    def client(i):
        time.sleep(i * spread / clients)
        return [server.complete(texts[(i + r * clients) % len(texts)], max_tokens)
                for r in range(rounds)]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    return time.perf_counter() - start, results


def steady(server, texts, args, alone_rate, alone_first, alone_latency, precision):
    clients = max(args.clients)
    wall, results = steady_clients(server, texts, clients, args.rounds, args.tokens,
                                   alone_latency)
    firsts, totals = [r[0] for r in results], [r[1] for r in results]
    rate = sum(r[2] for r in results) / wall
    p95_first = percentile(firsts, 95)
    report(f'serve_{clients}_clients_steady_tokens_per_s', rate, 'tokens/s',
           precision=precision, new_tokens=args.tokens, requests=len(results),
           ratio_vs_one_at_a_time=round(rate / alone_rate, 2), target_ratio=5,
           first_token_p50_s=round(statistics.median(firsts), 3),
           first_token_p95_s=round(p95_first, 3),
           first_token_p95_vs_alone=round(p95_first / alone_first, 2),
           target_first_token_ratio=3, latency_p50_s=round(statistics.median(totals), 3),
           latency_p95_s=round(percentile(totals, 95), 3))


def api_rate(path, precision, texts, max_tokens):
    """The API's tokens/s over `texts`, all in one batch."""
    gpt2 = generation.GPT2.load(path, batch_size=len(texts), seed=0, precision=precision)
    try:
        gpt2.generate(texts, length=4, stop_at_endoftext=False)  # warm-up
        start = time.perf_counter()
        gpt2.generate(texts, length=max_tokens, top_k=40, stop_at_endoftext=False)
        return len(texts) * max_tokens / (time.perf_counter() - start)
    finally:
        gpt2.close()


def throughput(args, precision):
    models_dir, name = random_model('124M')
    texts = prompts(max(args.clients))
    api = {n: api_rate(os.path.join(models_dir, name), precision, texts[:n], args.tokens)
           for n in (1, max(args.clients))}
    for n, rate in api.items():
        report(f'api_batch{n}_tokens_per_s', rate, 'tokens/s', precision=precision,
               new_tokens=args.tokens)
    server = Server(name, models_dir, '--max_batch', str(max(args.clients)), '--precision',
                    precision)
    try:
        # Every row's slot written once, as the API's engine has its own before it is timed.
        run_clients(server, texts, len(texts), 4)
        alone_wall, alone = run_clients(server, texts, 1, args.tokens)
        alone_rate = sum(r[2] for r in alone) / alone_wall
        alone_first = statistics.median(r[0] for r in alone)
        alone_latency = statistics.median(r[1] for r in alone)
        report('serve_one_at_a_time_tokens_per_s', alone_rate, 'tokens/s', precision=precision,
               requests=len(texts),
               new_tokens=args.tokens, first_token_p50_s=round(alone_first, 3))
        for clients in args.clients:
            wall, results = run_clients(server, texts[:clients], clients, args.tokens)
            firsts, totals = [r[0] for r in results], [r[1] for r in results]
            rate = sum(r[2] for r in results) / wall
            p95_first = percentile(firsts, 95) if clients > 1 else firsts[0]
            report(f'serve_{clients}_clients_tokens_per_s', rate, 'tokens/s',
                   precision=precision, new_tokens=args.tokens,
                   ratio_vs_one_at_a_time=round(rate / alone_rate, 2),
                   ratio_vs_api_same_batch=round(rate / api[clients], 2) if clients in api
                   else None, target_api_ratio=0.9,
                   target_ratio=5 if clients == 16 else None,
                   first_token_p50_s=round(statistics.median(firsts), 3),
                   first_token_p95_s=round(p95_first, 3),
                   first_token_p95_vs_alone=round(p95_first / alone_first, 2),
                   target_first_token_ratio=None,
                   latency_p50_s=round(statistics.median(totals), 3),
                   latency_p95_s=round(percentile(totals, 95) if clients > 1 else totals[0], 3))
        steady(server, texts, args, alone_rate, alone_first, alone_latency, precision)
    finally:
        server.stop()


def memory(args):
    models_dir, name = random_model('tiny')
    server = Server(name, models_dir, '--max_batch', '8', '--max_queue', '1000')
    try:
        texts = prompts(args.requests)
        run_clients(server, texts[:100], 8, 2)
        first = server.rss_mb()
        run_clients(server, texts[100:], 8, 2)
        last = server.rss_mb()
        report('serve_rss_growth_mb', last - first, 'MB', requests=args.requests,
               rss_after_100_mb=round(first, 1), rss_after_all_mb=round(last, 1),
               model='tiny shape', target_below_mb=100)
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--clients', type=int, nargs='+', default=[1, 4, 16])
    parser.add_argument('--tokens', type=int, default=128)
    parser.add_argument('--requests', type=int, default=10000)
    parser.add_argument('--rounds', type=int, default=4,
                        help='requests each client sends one after another, in use')
    parser.add_argument('--precision', nargs='+', default=['float32', 'bfloat16'])
    args = parser.parse_args()
    for precision in args.precision:
        throughput(args, precision)
        long_prompt_join(precision)
    memory(args)


if __name__ == '__main__':
    main()
