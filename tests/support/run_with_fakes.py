#!/usr/bin/env python3
"""Run one of the project's scripts with a test-only fake patched in: for tests that need
a phase slow, or held until a signal, by construction instead of by the machine's speed.
Tests only; nothing in the project reads these.

    python tests/support/run_with_fakes.py FAKE=VALUE [FAKE=VALUE...] SCRIPT [ARGS...]
    python tests/support/run_with_fakes.py FAKE=VALUE [FAKE=VALUE...] -c CODE [ARGS...]

FAKE is one of
    chief_work_delay=SECONDS  train.py: the chief's first sample writing sleeps SECONDS
    hold_after_step=N         train.py: after reporting step N, wait for SIGINT or SIGTERM
    late_start=SECONDS        train.py: a worker other than the chief sleeps SECONDS
                              before its first step
    hold_after_batches=N      sampling scripts: the batch after the first N waits for Ctrl-C
    serve_hold=N              serve.py: the engine starts no step until N requests have
                              been submitted (accepted or refused, also when refused
                              before their body is read), so that requests sent
                              one after another join the same step; each submission prints
                              `fake: request K submitted`
    serve_pause=STEPS:PATH    serve.py: after STEPS steps the engine takes no further step
                              until the file PATH exists, so that a test disconnects or
                              stops the server while a request is surely still running
    engine_dies=STEPS         serve.py: after STEPS steps the engine's thread ends on a
                              fault of the kind no step survives (SystemExit)
    warm_up_fails=1           serve.py: the warm-up before serving raises (a fault of ours)
    nvidia_version_file=PATH  any script: the NVIDIA driver file is PATH (missing: no
                              driver), not /proc/driver/nvidia/version
    gpus=JSON                 any script: TensorFlow's GPUs are these, each {"name": ...,
                              "compute_capability": [8, 0]} (`[]`: none)

The machine's fakes (nvidia_version_file, gpus) print nothing; each other one prints a
line starting with `fake:` (to stdout from train.py, to stderr from the other scripts)
when it takes effect, so that a test can wait for that event.
"""

import importlib.abc
import importlib.util
import itertools
import json
import os
import runpy
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def chief_work_delay(seconds):
    from gpt2tune.train import evaluation
    write_samples = evaluation.Evaluation.write_samples
    delayed = []

    def slow_write_samples(self, step):
        if not delayed:
            delayed.append(True)
            print(f'fake: chief work delayed {seconds:g} s', flush=True)
            time.sleep(seconds)
        write_samples(self, step)
    evaluation.Evaluation.write_samples = slow_write_samples


def hold_after_step(step):
    from gpt2tune.train import training
    report_step = training.Trainer.report_step

    def report_then_hold(self, stop, *args):
        report_step(self, stop, *args)
        if self.step == step:
            print(f'fake: holding after step {step} until a signal', flush=True)
            while not stop.requested:  # set by train()'s signal handler
                time.sleep(0.01)
    training.Trainer.report_step = report_then_hold


def late_start(seconds):
    from gpt2tune.train import training
    run = training.Trainer.run

    def late_run(self, stop):
        if not self.cluster.is_chief:
            print(f'fake: start delayed {seconds:g} s', flush=True)
            time.sleep(seconds)
        return run(self, stop)
    training.Trainer.run = late_run


def hold_after_batches(n_batches):
    from gpt2tune.generate import generation
    samples = generation.GPT2.samples
    calls = []

    def samples_or_hold(self, *args, **kwargs):
        calls.append(True)
        if len(calls) > n_batches:
            print(f'fake: holding before batch {len(calls)} until Ctrl-C', file=sys.stderr,
                  flush=True)
            while True:
                time.sleep(1)  # SIGINT raises KeyboardInterrupt here
        return samples(self, *args, **kwargs)
    generation.GPT2.samples = samples_or_hold


def serve_hold(n_requests):
    from gpt2tune.serve import batching
    submit, busy, full = batching.Engine.submit, batching.Engine.busy, batching.Engine.full
    submitted = []

    def counted_submit(self, job):
        submitted.append(job)
        try:
            return submit(self, job)  # wakes the engine's thread, which asks busy()
        finally:
            print(f'fake: request {len(submitted)} submitted', file=sys.stderr, flush=True)

    def counted_full(self):  # a request refused before its body is read counts too
        if not full(self):
            return False
        submitted.append(None)
        print(f'fake: request {len(submitted)} submitted', file=sys.stderr, flush=True)
        with self.cond:
            self.cond.notify()
        return True
    batching.Engine.submit, batching.Engine.full = counted_submit, counted_full
    batching.Engine.busy = lambda self: len(submitted) >= n_requests and busy(self)


def serve_pause(spec):
    from gpt2tune.generate import engine
    steps, release = spec.split(':', 1)
    step = engine.Engine.step
    taken = []

    def step_then_pause(self):
        result = step(self)
        taken.append(True)
        if len(taken) == int(steps):
            print(f'fake: engine paused after step {steps}', file=sys.stderr, flush=True)
            while not os.path.exists(release):
                time.sleep(0.01)
        return result
    engine.Engine.step = step_then_pause


def warm_up_fails(_):
    from gpt2tune.generate import numpy_model

    def fail(*args, **kwargs):  # the warm-up is the server's first prefill
        raise RuntimeError('fake: warm-up failed')
    numpy_model.Forward.prefill = fail


def engine_dies(steps):
    from gpt2tune.generate import engine
    step = engine.Engine.step
    taken = []

    def step_then_die(self):
        if len(taken) == steps:
            print('fake: engine thread dies', file=sys.stderr, flush=True)
            raise SystemExit('fake: the engine thread died')
        taken.append(True)
        return step(self)
    engine.Engine.step = step_then_die


def nvidia_version_file(path):
    from gpt2tune import nvidia  # imports no TensorFlow
    nvidia.VERSION_FILE = path


def gpus(spec):
    # resources imports TensorFlow, which the script's quiet start must import first.
    when_imported('gpt2tune.resources', lambda module: simulate_gpus(module, json.loads(spec)))


def simulate_gpus(resources, devices):
    """resources.gpus() and gpu_details() answer with `devices` ({'name',
    'compute_capability'} each) instead of TensorFlow's list."""
    import tensorflow as tf
    physical = [tf.config.PhysicalDevice(f'/physical_device:GPU:{i}', 'GPU')
                for i in range(len(devices))]
    resources.gpus = lambda: physical
    resources.gpu_details = lambda gpu: {
        'device_name': devices[resources.gpu_index(gpu)]['name'],
        'compute_capability': tuple(devices[resources.gpu_index(gpu)]['compute_capability'])}


def when_imported(name, patch):
    """patch(module) as soon as the module `name` is first imported."""
    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname != name:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run = spec.loader.exec_module

            def run_then_patch(module):
                run(module)
                patch(module)
            spec.loader.exec_module = run_then_patch
            return spec
    sys.meta_path.insert(0, Finder())


FAKES = {'chief_work_delay': (chief_work_delay, float),
         'hold_after_step': (hold_after_step, int),
         'hold_after_batches': (hold_after_batches, int),
         'late_start': (late_start, float),
         'serve_hold': (serve_hold, int),
         'serve_pause': (serve_pause, str),
         'engine_dies': (engine_dies, int),
         'warm_up_fails': (warm_up_fails, int),
         'nvidia_version_file': (nvidia_version_file, str),
         'gpus': (gpus, str)}


def main(*args):
    fakes = list(itertools.takewhile(lambda a: a.partition('=')[0] in FAKES, args))
    script, *rest = args[len(fakes):]
    for fake in fakes:
        name, value = fake.split('=', 1)
        install, kind = FAKES[name]
        install(kind(value))
    if script == '-c':
        code, *rest = rest
        sys.argv = ['-c', *rest]
        exec(compile(code, '<string>', 'exec'), {'__name__': '__main__'})
        return
    if not script.endswith('.py'):  # a module: gpt2tune.commands.serve
        sys.argv = [script, *rest]
        runpy.run_module(script, run_name='__main__', alter_sys=True)
        return
    path = os.path.join(ROOT, script)
    sys.argv = [path, *rest]
    runpy.run_path(path, run_name='__main__')


def command(fakes, script, *args):
    """The command line that runs `script` (a path from the repository root, or a module)
    with `fakes` (one FAKE=VALUE, or several in a list)."""
    fakes = [fakes] if isinstance(fakes, str) else list(fakes)
    return [sys.executable, os.path.abspath(__file__), *fakes, script, *args]


if __name__ == '__main__':
    main(*sys.argv[1:])
