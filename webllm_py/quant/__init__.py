"""Weight formats: group quantization (q4, q8) and plain f16/f32, with pack/unpack and error stats."""

from .formats import FORMATS, WeightFormat, dequantize, quantize, quantization_error

__all__ = ["FORMATS", "WeightFormat", "quantize", "dequantize", "quantization_error"]
