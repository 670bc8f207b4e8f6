"""What the seed reports claim, as data: one ``NNN.yaml`` per report, read by :mod:`mnistgen.claims`."""
