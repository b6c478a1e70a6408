"""What a run stores: the CSV columns, the results file and its sidecar, the machine and environment, statistics."""
