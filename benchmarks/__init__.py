"""Benchmarks (not part of the test suite), each a ``python -m benchmarks.<name>`` command: ``kernels``
times the convolution and batch-norm kernels on the ssgan layer shapes (results in ``RESULTS.md``),
``train_step`` whole training steps; ``common`` holds what they share (worker processes, the peak)."""
