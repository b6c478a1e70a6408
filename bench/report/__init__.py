"""What reads stored runs: analysis, tables, charts, the HTML report, compare, history, the training summary."""
