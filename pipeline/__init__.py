"""Luigi tasks that chain the nvsc stages, hashed atomic outputs, provenance and the `nvsc` command."""
