"""Command-line interface: one module per command, each with `add_arguments(parser)` and `run(args) -> int`.

Command modules import only argparse-level things at the top; heavy imports live inside `run`,
so `gear-trt --help` stays instant and never touches TensorRT.
"""
