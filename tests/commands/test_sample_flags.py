"""The sampling scripts' command lines beyond their flags' declarations
(commands/sample_flags.py): the 2019 rule on --batch_size."""

import pytest

from gpt2tune.commands.sample_flags import check_batches
from gpt2tune.errors import UserError


def test_batch_size_must_divide_nsamples_where_samples_come_a_batch_at_a_time():
    check_batches(4, 2)
    check_batches(0, 3)  # the unconditional script's "until interrupted"
    with pytest.raises(UserError, match='--nsamples 3 is not a multiple of --batch_size 2'):
        check_batches(3, 2)
    with pytest.raises(UserError, match='--batch_size 0: must be a whole number'):
        check_batches(3, 0)
