"""Reports: ``mnistgen report`` (:mod:`.report`) and ``mnistgen reproduce`` (:mod:`.reproduce`), built from
shared parts so that both say the same thing the same way: a run's scored result (:mod:`.results`), the
rankings read off a table (:mod:`.findings`), a run's figures (:mod:`.figures`) and the document writer
that turns blocks into markdown, a self-contained HTML page and results.json (:mod:`.document`)."""
