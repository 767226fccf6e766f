"""Decoding: the engine every surface drives (engine.py), the forward pass it runs
(numpy_model.py) over kernels of each precision (kernels.py, row_product.py), the token
chooser and its options (sample.py), the Python API (generation.py) and the sampling
scripts' files (sample_files.py)."""
