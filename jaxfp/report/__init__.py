"""Reports of results: metrics, markdown tables, pictures, TensorBoard."""
