"""What every command-line script shares: one clear line for a user's mistake, and
TensorFlow started without its log noise.

    cli.run(main)                         # main may raise UserError
    tf = cli.start_tensorflow(verbose)    # before importing the modules that use it
"""

import logging
import os
import re
import sys
import tempfile

# What TensorFlow prints at start on every machine (its C++ info and warning lines, which
# absl writes before TF_CPP_MIN_LOG_LEVEL applies, and the CPU-feature notice); read as
# failures by users, they say nothing about their run.
START_NOISE = re.compile(r'[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] '
                         r'|WARNING: All log messages before absl::InitializeLog\(\)'
                         r'|To enable the following instructions: ')
# cuInit fails, at error level, wherever there is no NVIDIA driver at all; with a driver
# installed the same line is a real fault and shows.
NO_DRIVER_NOISE = re.compile(r'E\d{4} .*failed call to cuInit')


class UserError(Exception):
    """Bad input from the user: reported as one line, with exit status 2, no traceback."""


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


def user_path(path):
    """A path as the user wrote it, with `~` and `$VARS` expanded: every path from a flag
    goes through here."""
    return os.path.expanduser(os.path.expandvars(path))


def is_start_noise(line, has_driver):
    return bool(START_NOISE.match(line) or (not has_driver and NO_DRIVER_NOISE.match(line)))


def start_tensorflow(verbose=False):
    """Import TensorFlow and find its devices, keeping back the start-up lines above; after
    that only its errors show. `verbose`, or the user's own TF_CPP_MIN_LOG_LEVEL, shows
    everything as TensorFlow prints it. Returns the tensorflow module."""
    if verbose or 'TF_CPP_MIN_LOG_LEVEL' in os.environ or 'tensorflow' in sys.modules:
        import tensorflow as tf
        return tf
    os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'  # C++ errors only, once absl has started
    sys.stderr.flush()
    real_stderr = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)  # the C++ side writes to file descriptor 2 directly
        try:
            import tensorflow as tf
            tf.config.list_physical_devices()  # where the CUDA lines are printed
        finally:
            sys.stderr.flush()
            os.dup2(real_stderr, 2)
            os.close(real_stderr)
            held.seek(0)
            has_driver = os.path.exists('/proc/driver/nvidia/version')
            lines = held.read().decode('utf-8', 'replace').splitlines(keepends=True)
            sys.stderr.write(''.join(line for line in lines
                                     if not is_start_noise(line, has_driver)))
            sys.stderr.flush()
    tf.get_logger().setLevel('ERROR')  # the Python side: deprecation warnings at each save
    return tf
