"""The "people you may know" feed."""
