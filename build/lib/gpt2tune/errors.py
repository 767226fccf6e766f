"""A user's mistake and a user's path: what every module may need, importing nothing of
the project (the bottom of its import graph).

    raise UserError('--steps: must be 0 or more')   # one `error:` line, exit status 2
    path = user_path(flag_value)                     # ~ and $VARS expanded
"""

import os


class UserError(Exception):
    """Bad input from the user: reported as one line, with exit status 2, no traceback."""


def user_path(path):
    """A path as the user wrote it, with `~` and `$VARS` expanded: every path from a flag
    goes through here."""
    return os.path.expanduser(os.path.expandvars(path))
