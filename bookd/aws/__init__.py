"""The AWS side: the boto3 client factory, the table of AWS errors, and the adapters.

- ``clients``: make_client, with the hooks every client gets (timing, the call log);
- ``codes``: the one table of error codes and their kinds, and ``call``;
- ``sqs`` and ``s3``: bookd.core.ports' queues and store on boto3, no business logic;
- ``uploads``: the listener's store, whose puts go through the CRT's S3 client;
- ``provision``: creating the queues and buckets.

Imports bookd.core and bookd.telemetry (the client factory times every call).
"""
