"""A/B experiments: served answers joined with what users did next (outcomes), the statistics
that compare arms (stats), and simulated listeners that rehearse an experiment (simulator)."""
