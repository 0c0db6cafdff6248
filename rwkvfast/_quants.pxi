# _quants.pxi — bindings for csrc/quants.h (block formats: dequantize / quantize rows).
# Included by _core.pyx.
