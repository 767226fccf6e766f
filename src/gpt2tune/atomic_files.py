"""Files that appear whole or not at all, also after a power loss: what the run folder
(checkpoints.py) and the run's samples (run_log.py) are written with.

    write_atomic('checkpoint/run1/counter', '250\n')
"""

import os


def write_atomic(path, text):
    """Replace `path` with `text` so that a reader sees the old or the new file, whole,
    also after a power loss (the file, then its directory entry, reach the disk)."""
    partial = f'{path}.partial'
    try:
        with open(partial, 'w', encoding='utf-8') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:  # no half-written file left beside the whole one
        if os.path.exists(partial):
            os.remove(partial)
        raise
    sync_directory(os.path.dirname(path) or '.')


def sync_directory(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
