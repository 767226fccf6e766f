"""What every command-line script shares: one clear line for a user's mistake, and
TensorFlow started without its log noise.

    cli.run(main)                         # main may raise UserError
    tf = cli.start_tensorflow(verbose)    # before importing the modules that use it

start_tensorflow ends with the device line on stderr (stdout carries the scripts' samples
and results): where the work runs, after a `warning:` line when an NVIDIA driver is
installed but TensorFlow sees no GPU (resources.report_devices builds both).
"""

import argparse
import logging
import os
import re
import sys
import tempfile

from gpt2tune import nvidia
from gpt2tune.errors import UserError

# What TensorFlow prints at start on every machine (its C++ info and warning lines, which
# absl writes before TF_CPP_MIN_LOG_LEVEL applies, and the CPU-feature notice); read as
# failures by users, they say nothing about their run.
START_NOISE = re.compile(r'[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] '
                         r'|WARNING: All log messages before absl::InitializeLog\(\)'
                         r'|To enable the following instructions: ')
# cuInit fails, at error level, wherever there is no NVIDIA driver at all; with a driver
# installed the same line is a real fault (replaced by a warning, see GPU_NOISE).
NO_DRIVER_NOISE = re.compile(r'E\d{4} .*failed call to cuInit')
# TensorFlow's lines about a GPU it cannot use (cuInit failing, CUDA libraries it cannot
# load, driver and library versions that disagree): with a driver installed and no GPU
# seen, the one warning of resources.no_gpu_warning says the same to a user.
GPU_NOISE = re.compile(r'[EW]\d{4} [\d:.]+ +\d+ (cuda|gpu)_\w+\.cc:\d+\] '
                       r'|Skipping registering GPU devices')
# Set beside TF_CPP_MIN_LOG_LEVEL when the quiet start sets it: a program started from this
# one (a script run by a program that imported the API) inherits the level, and must not
# take it for the user's own.
QUIET_MARK = 'GPT2_QUIET_TENSORFLOW'


def run(main, *args, **kwargs):
    """Call `main` and exit: 0, or 2 with the one line of a UserError on stderr."""
    try:
        main(*args, **kwargs)
        code = 0
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        code = 2
    if 'tensorflow' in sys.modules:
        # Every file is written and closed by now; the interpreter's teardown of
        # TensorFlow would take a second or more and do nothing we need.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


class FlagParser(argparse.ArgumentParser):
    """argparse whose mistakes (a bad flag or value) are UserErrors: one `error:` line."""

    def error(self, message):
        raise UserError(message)


def is_start_noise(line, has_driver):
    return bool(START_NOISE.match(line) or (not has_driver and NO_DRIVER_NOISE.match(line)))


def is_gpu_noise(line):
    return bool(GPU_NOISE.match(line))


def start_tensorflow(verbose=False, report_devices=True):
    """Import TensorFlow and find its devices, keeping back the start-up lines above; after
    that only its errors show. `verbose`, or the user's own TF_CPP_MIN_LOG_LEVEL, shows
    everything as TensorFlow prints it. Then, once per process and unless
    `report_devices` is false, the device line on stderr (see above). Returns the
    tensorflow module."""
    if 'tensorflow' in sys.modules:
        import tensorflow as tf
        return tf
    users_level = 'TF_CPP_MIN_LOG_LEVEL' in os.environ and QUIET_MARK not in os.environ
    if verbose or users_level:
        import tensorflow as tf
    else:
        tf = start_quietly()
    if report_devices:
        from gpt2tune import resources
        resources.report_devices()
    return tf


def start_quietly():
    """Import TensorFlow with its start-up lines held back, as start_tensorflow says."""
    os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'  # C++ errors only, once absl has started
    os.environ[QUIET_MARK] = '1'  # the level is ours, not the user's, in child processes too
    sys.stderr.flush()
    real_stderr = os.dup(2)
    has_driver = nvidia.driver_present()
    gpu_unused = False  # a driver is installed but TensorFlow sees no GPU
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)  # the C++ side writes to file descriptor 2 directly
        try:
            import tensorflow as tf
            tf.config.list_physical_devices()  # where the CUDA lines are printed
            from gpt2tune import resources
            gpu_unused = has_driver and not resources.gpus()
        finally:
            sys.stderr.flush()
            os.dup2(real_stderr, 2)
            os.close(real_stderr)
            held.seek(0)
            lines = held.read().decode('utf-8', 'replace').splitlines(keepends=True)
            sys.stderr.write(''.join(line for line in lines
                                     if not is_start_noise(line, has_driver)
                                     and not (gpu_unused and is_gpu_noise(line))))
            sys.stderr.flush()
    tf.get_logger().setLevel('ERROR')  # the Python side: deprecation warnings at each save
    return tf
