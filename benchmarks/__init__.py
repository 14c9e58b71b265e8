"""Speed benchmarks of expmae (see benchmarks/README.md); run as modules from the repository root."""
