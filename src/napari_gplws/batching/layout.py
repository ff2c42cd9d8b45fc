"""The files a batch writes at the top of its output folder (beside one folder per stack)."""

#: Finished stacks, their inputs, options and output checksums (what makes a re-run resume).
MANIFEST_NAME = "manifest.json"
#: One row per stack: status, seconds, error.
SUMMARY_CSV = "summary.csv"
#: The same as :data:`SUMMARY_CSV`, with the run's options.
SUMMARY_JSON = "summary.json"
