"""Core helpers every part may use: errors, atomic writes, seeding, run reports, file readers
and array validation. Nothing here imports from a part of the pipeline."""
