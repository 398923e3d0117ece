"""Generated protobuf modules. Do not edit: run ``python proto/generate.py``."""
