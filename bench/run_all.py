#!/usr/bin/env python3
"""Every benchmark, one after another (`make bench`): JSON lines on standard output.

    PYTHONPATH=src python bench/run_all.py
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

for script in ('bench_train.py', 'bench_sample.py', 'bench_encode.py'):
    subprocess.run([sys.executable, os.path.join(HERE, script)], check=True)
