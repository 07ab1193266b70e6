"""Evaluation on the deployed artifact: accuracy (clean, corrupted), latency and the benchmark table.

Everything takes a Runner (gear_trt.backends), so torch, onnxruntime and TensorRT are measured
the same way.
"""
