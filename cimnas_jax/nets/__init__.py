"""Quantization-aware elastic supernets that measure a design's accuracy on real images.

``supernet`` (the MobileNetV2 family of the mbv2_rram space), ``quant`` (fake quantizers), ``arch``
(architecture dicts, as ``Space.architecture`` returns them), ``train`` (sandwich-rule training and
subnet fine-tuning), ``evaluate`` (per-subnet BN re-estimation + accuracy), ``io`` (export / load).
"""
