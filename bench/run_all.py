#!/usr/bin/env python3
"""Every benchmark, one after another (`make bench`): JSON lines on standard output.

    PYTHONPATH=src python bench/run_all.py
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Each in a process of its own, so that peak memory is each one's own.
for script, *args in (('bench_train.py', '--precision', 'auto'),
                      ('bench_train.py', '--precision', 'float32'),
                      ('bench_sample.py',), ('bench_precision.py',), ('bench_savedmodel.py',),
                      ('bench_serve.py',),
                      ('bench_encode.py',), ('bench_startup.py',)):
    subprocess.run([sys.executable, os.path.join(HERE, script), *args], check=True)
