"""Old name of :mod:`course_utils.formats` (the floating-point formats), kept so that
``from course_utils.numerics import to_bits, from_bits`` keeps working."""
from .formats import (FORMATS, Format, add_in, epsilon, fields, format_info, from_bits, get_format, max_finite,
                      nan_bits, next_up, round_to, smallest_normal, smallest_subnormal, spacing, to_bits, torch_dtype)

__all__ = ["FORMATS", "Format", "add_in", "epsilon", "fields", "format_info", "from_bits", "get_format",
           "max_finite", "nan_bits", "next_up", "round_to", "smallest_normal", "smallest_subnormal", "spacing",
           "to_bits", "torch_dtype"]
