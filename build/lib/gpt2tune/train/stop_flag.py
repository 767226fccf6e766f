"""Stopping a training run cleanly: SIGINT (Ctrl-C) and SIGTERM (containers, schedulers)
ask the loop to finish the current step, save and exit 0.

    with StopFlag().installed() as stop:
        while not stop.requested: ...
"""

import contextlib
import os
import signal


class StopFlag:
    """SIGINT (Ctrl-C) and SIGTERM (containers, schedulers) ask the loop to finish the
    current step, save and exit 0. A second one while the step runs exits at once, losing
    what was trained since the last save; during a save, or once the run is saved, it is
    only noted."""

    def __init__(self):
        self.requested = False  # by a signal, another worker or early stopping
        self.signalled = self.saving = self.finished = False
        self.early = False  # requested by early stopping
        self.saved = 0  # the newest step saved, for the message

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.finished:
            print(f'{name}: the run is saved, finishing', flush=True)
        elif self.signalled and self.saving:
            print(f'{name}: already stopping, saving first', flush=True)
        elif self.signalled:
            print(f'{name} again: stopping now; training since step {self.saved} (the newest '
                  'checkpoint) is lost', flush=True)
            os._exit(130)
        else:
            print(f'{name}: stopping after this step and saving (send it again to stop at '
                  'once)', flush=True)
        self.signalled = self.requested = True

    @contextlib.contextmanager
    def saving_now(self):
        self.saving = True
        try:
            yield
        finally:
            self.saving = False

    @contextlib.contextmanager
    def installed(self):
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
