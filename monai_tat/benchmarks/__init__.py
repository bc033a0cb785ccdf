"""Speed benchmarks (scripts, not tests): ``python -m monai_tat.benchmarks.<name> --help``."""
