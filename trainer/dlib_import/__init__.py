"""Pretrained dlib networks brought into the trainer in pure Python: no dlib at run time.

``dat_reader`` decodes dlib's serialization into typed layer records; ``convert`` maps those records onto a
PyTorch module from ``trainer.models`` and writes an ordinary checkpoint.
"""
