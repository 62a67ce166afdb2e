"""What tests/ and bench/ share, each helper written once.

- ``localstack``: is the real LocalStack up; a private one for tests that restart it.
- ``resources``: unique queues and buckets per test or run, and their removal; sending
  to and draining the real queues.
- ``stack``: the real supervisord + Gunicorn + listener tree on a free port.
- ``proxy``: a loopback TCP proxy that adds latency or injects faults by service.
- ``procfs``: processes as /proc shows them.
- ``audit``: what a run left in S3 and on the queues, against what was sent.
- ``waiting``: polling with a deadline, free ports.
"""
