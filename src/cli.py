"""What every command-line script shares: one clear line for a user's mistake."""

import sys


class UserError(Exception):
    """Bad input from the user: reported as one line, with exit status 2, no traceback."""


def run(main, *args, **kwargs):
    """Call `main`; a UserError exits 2 with its one line on stderr."""
    try:
        return main(*args, **kwargs)
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
