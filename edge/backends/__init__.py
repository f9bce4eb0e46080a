"""Inference runtimes behind one interface, chosen by name through a single registry."""
from edge.registry import Registry

BACKENDS = Registry("backend", {
    "onnxruntime": "edge.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "tflite": "edge.backends.tflite_backend:TFLiteBackend",
})

# Which file formats each backend runs; read without importing the runtime itself.
BACKEND_FORMATS = {"onnxruntime": ("onnx",), "tflite": ("tflite",)}
