import re

from fixtures import nvidia_machine, run_script

DOCTOR = 'gpt2tune.commands.doctor'


def test_the_self_check_reports_the_machine_the_choices_and_a_real_step(vocab_dir, tmp_path):
    out = run_script(DOCTOR, '--size', 'tiny', '--vocab_dir', vocab_dir,
                     cwd=tmp_path).stdout
    sections = re.findall(r'^== (\w+)', out, re.MULTILINE)
    assert sections == ['machine', 'choices', 'a']
    assert re.search(r'^cpu: .+, \d+ cores', out, re.MULTILINE)
    for size in ('124M', '355M', '774M', '1558M'):
        assert re.search(rf'^{size}: memory_saving_gradients (on|off) ', out, re.MULTILINE)
    assert re.search(r'^largest that fits: adam \S+, adafactor \S+, sgd \S+, adam\+lora \S+, '
                     r'adafactor\+lora \S+, sgd\+lora \S+', out, re.MULTILINE)
    step = re.search(r'^training step: [\d.]+ s, (\d+) tokens/s, .* loss ([\d.]+) \(random '
                     r'weights: about ([\d.]+)\)', out, re.MULTILINE)
    assert int(step.group(1)) > 0
    assert abs(float(step.group(2)) - float(step.group(3))) < 0.5  # a real forward pass
    assert re.search(r'^sampling: 16 tokens in [\d.]+ s, [\d.]+ tokens/s', out, re.MULTILINE)
    assert list(tmp_path.iterdir()) == []  # the random model was temporary


def test_the_self_check_names_a_missing_vocabulary(tmp_path):
    result = run_script(DOCTOR, '--vocab_dir', str(tmp_path), check=False)
    assert result.returncode == 2
    assert result.stderr == (f'error: {tmp_path}: no encoder.json and vocab.bpe there; pass '
                             '--vocab_dir (sh download_model.sh 117M fetches them)\n')


def test_the_self_check_reports_the_driver_and_a_simulated_gpus_free_memory(vocab_dir,
                                                                           tmp_path):
    env, fakes = nvidia_machine(tmp_path, driver='550.54.14',
                                smi_rows=['Tesla T4, 15360, 12288'],
                                gpus=[{'name': 'Tesla T4', 'compute_capability': [7, 5]}])
    result = run_script(DOCTOR, '--size', 'tiny', '--vocab_dir', vocab_dir, env=env,
                        fakes=fakes)
    machine = result.stdout.split('== choices')[0].splitlines()
    assert machine[-3:] == [
        'device: GPU:0 Tesla T4 (15.0 GB, compute capability 7.5); precision auto: float16 '
        'matrix products', 'nvidia driver: 550.54.14', 'GPU:0 free memory: 12.0 GB']
    # 12 GB free: Adam fits 774M, Adafactor 1558M, either with LoRA 1558M
    # (train_memory's estimates)
    assert re.search(r"^largest that fits: adam 774M, adafactor 1558M, sgd 1558M, adam\+lora "
                     r"1558M, adafactor\+lora 1558M, sgd\+lora 1558M \(in GPU:0's free memory",
                     result.stdout, re.MULTILINE)
    assert 'device:' not in result.stderr  # the report has it, once


def test_the_self_check_warns_of_a_driver_whose_gpu_tensorflow_does_not_see(vocab_dir,
                                                                           tmp_path):
    env, fakes = nvidia_machine(tmp_path, driver='550.54.14')
    out = run_script(DOCTOR, '--size', 'tiny', '--vocab_dir', vocab_dir, env=env,
                     fakes=fakes).stdout
    machine = out.split('== choices')[0].splitlines()
    assert machine[-3].startswith('warning: NVIDIA driver 550.54.14 found but TensorFlow '
                                  'sees no GPU')
    assert machine[-2].startswith('device: CPU ') and machine[-1] == 'nvidia driver: 550.54.14'
