"""Inference runtimes behind one interface, chosen by name through a single registry."""
from edge.base.registry import Registry

BACKENDS = Registry("backend", {
    "onnxruntime": "edge.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "tflite": "edge.runtime.backends.tflite_backend:TFLiteBackend",
    "tensorrt": "edge.runtime.backends.tensorrt_backend:TensorRTBackend",
})

# Which file formats each backend runs; read without importing the runtime itself.
BACKEND_FORMATS = {"onnxruntime": ("onnx",), "tflite": ("tflite",), "tensorrt": ("onnx",)}
# The module each backend imports: whether a backend runs on this machine is known without loading a model.
RUNTIME_MODULES = {"onnxruntime": "onnxruntime", "tflite": "ai_edge_litert", "tensorrt": "tensorrt"}
ENGINE_CACHE = "engines"      # in a bundle: engines a runtime built on this device (TensorRT), kept for next start
