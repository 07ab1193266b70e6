"""gear-trt: grow, train and robustify small CNNs (GEARnn) and deploy them through ONNX and TensorRT.

Importing the package is cheap: heavy modules (torch, onnx, tensorrt) load only where used.
"""

__version__ = "0.1.0"
