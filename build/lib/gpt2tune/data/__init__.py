"""Text into tokens: GPT-2's BPE (encoder.py), documents from common formats
(text_data.py), corpora into token arrays (load_dataset.py) and training batches from
them (data_sampler.py)."""
