"""The report (``workflow/rules/report.smk``): MIPs, the drift gallery and dataset plots
(:mod:`.figures`)."""
