"""gpt2tune-peft (commands/peft.py): what export refuses (the adapters' conversion,
checked in peft and transformers: tests/export/test_lora_peft.py)."""

import os

import pytest

from gpt2tune.commands import peft as peft_command
from gpt2tune.errors import UserError


@pytest.mark.slow  # as in tests/export/test_lora_peft.py, whose tests are all slow
def test_a_run_that_also_trains_weights_is_not_exported(trained, tmp_path):
    run, _ = trained
    with pytest.raises(UserError, match='also trains model/ln_f.*--also_train'):
        peft_command.export(str(run), str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()


def test_a_model_without_adapters_is_not_exported(models_dir, tmp_path):
    with pytest.raises(UserError, match='model.ckpt: holds no LoRA adapters'):
        peft_command.export(os.path.join(models_dir, 'tiny'), str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()
