"""Studies and tools beside the library: figures from records, the benchmark suite."""
