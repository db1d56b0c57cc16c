"""Exit codes of a batch shard (``talkgen k8s run``); the rendered Job's podFailurePolicy maps them.

- `EXIT_OK` 0: every request of the shard has a final record, all succeeded.
- `EXIT_FINAL_FAILURE` 42: the shard finished and at least one request failed for good (bad input, too
  long, ...): a retry cannot help (podFailurePolicy ``FailIndex``). Its status JSON says why.
- `EXIT_RETRYABLE` 75 (EX_TEMPFAIL): at least one request failed retryably or the runner was stopped
  (SIGTERM): the retried pod skips every request with a final record and resumes the rest from checkpoints.
- `EXIT_CONFIG` 78 (EX_CONFIG): the runner cannot start (bad arguments, a missing or unreadable requests
  file, a misconfigured worker): the same for every retry (``FailIndex``).
"""

EXIT_OK = 0
EXIT_FINAL_FAILURE = 42
EXIT_RETRYABLE = 75
EXIT_CONFIG = 78

EXIT_CODES = {
    EXIT_OK: "every request succeeded",
    EXIT_FINAL_FAILURE: "finished; at least one request failed for good (see its status JSON)",
    EXIT_RETRYABLE: "stopped or a request failed retryably: retry the shard (it resumes)",
    EXIT_CONFIG: "cannot start: bad arguments, requests file or worker configuration",
}
"""Each code and what it means, for help texts and docs."""
