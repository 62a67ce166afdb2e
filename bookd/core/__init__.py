"""The pure core: books, dead-letter reasons, errors, exit codes, settings, ports.

No I/O beyond reading the environment (config), no boto3, no threads. It imports
nothing of bookd's outside itself; every other package may import it.
"""
