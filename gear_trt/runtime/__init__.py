"""Embed a gear-trt model in an app: load(path).predict(images) with the training preprocessing.

    from gear_trt.runtime import load
    model = load("model.onnx")               # onnxruntime on the CPU
    model = load("model.engine")             # TensorRT, with model.engine.json beside it
    pred = model.predict(images, k=3)        # uint8 RGB, HxWx3 / NxHxWx3 / list of HxWx3
    pred.labels, pred.indices, pred.scores

A Classifier is the metadata's preprocessing (gear_trt.artifacts) + a gear_trt.backends Runner
+ softmax/top-k. Only numpy, onnxruntime (for ONNX) and, for engines, tensorrt + torch are
imported: never the trainer, the models or the data pipeline, so the runtime works in a lean app
environment.
"""

from gear_trt.artifacts.preprocess import preprocess
from gear_trt.runtime.classifier import Classifier, Prediction, load
from gear_trt.runtime.postprocess import softmax, topk_indices

__all__ = ["Classifier", "Prediction", "load", "preprocess", "softmax", "topk_indices"]
