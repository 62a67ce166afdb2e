"""The per-message rules: validate, store, announce, dead-letter, retry, delete.

No threads of their own and no boto3: they reach the queues and the store through
bookd.core.ports, and report what happens through bookd.core.outcomes, which
bookd.telemetry implements (so the rules never import metrics or write message log
lines). The listener (bookd.listener) gives them messages and threads to run groups on.
Imports bookd.core only.
"""
