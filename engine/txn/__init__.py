"""Transaction pipelines: one module per transaction code (`t2207.py` ...), each a
list of participants; `registry.py` routes `infno` to its pipeline."""
