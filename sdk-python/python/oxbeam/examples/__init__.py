"""Examples: Beam's own, with only the import changed."""
