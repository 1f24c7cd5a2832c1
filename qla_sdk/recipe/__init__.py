"""The whole QuaLA recipe as stages: fine-tune, distil, LAT, search, quantize, export, benchmark, report."""
