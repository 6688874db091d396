"""The generator: choice sources, the call-ABI case generator, coverage
cells, and interpreter expectations for run lines."""
