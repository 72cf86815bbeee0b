"""feedbench: the feed over a synthetic 100,000-user population."""
