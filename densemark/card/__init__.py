"""The dataset card: generated from a build's manifest, run report, shards and landmark-set file."""
