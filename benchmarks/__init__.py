"""Speed benchmarks: `python -m benchmarks.refnet` (training step against peer
frameworks) and `python -m benchmarks.ops` (each op's hand-written backward against
autodiff of its forward)."""
