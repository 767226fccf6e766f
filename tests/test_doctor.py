import re

from fixtures import run_script


def test_the_self_check_reports_the_machine_the_choices_and_a_real_step(vocab_dir, tmp_path):
    out = run_script('src/doctor.py', '--size', 'tiny', '--vocab_dir', vocab_dir,
                     cwd=tmp_path).stdout
    sections = re.findall(r'^== (\w+)', out, re.MULTILINE)
    assert sections == ['machine', 'choices', 'a']
    assert re.search(r'^cpu: .+, \d+ cores', out, re.MULTILINE)
    for size in ('124M', '355M', '774M', '1558M'):
        assert re.search(rf'^{size}: memory_saving_gradients (on|off) ', out, re.MULTILINE)
    assert re.search(r'^largest that fits: adam \S+, adafactor \S+, sgd \S+', out, re.MULTILINE)
    step = re.search(r'^training step: [\d.]+ s, (\d+) tokens/s, .* loss ([\d.]+) \(random '
                     r'weights: about ([\d.]+)\)', out, re.MULTILINE)
    assert int(step.group(1)) > 0
    assert abs(float(step.group(2)) - float(step.group(3))) < 0.5  # a real forward pass
    assert re.search(r'^sampling: 16 tokens in [\d.]+ s, [\d.]+ tokens/s', out, re.MULTILINE)
    assert list(tmp_path.iterdir()) == []  # the random model was temporary


def test_the_self_check_names_a_missing_vocabulary(tmp_path):
    result = run_script('src/doctor.py', '--vocab_dir', str(tmp_path), check=False)
    assert result.returncode == 2
    assert result.stderr == (f'error: {tmp_path}: no encoder.json and vocab.bpe there; pass '
                             '--vocab_dir (sh download_model.sh 117M fetches them)\n')
