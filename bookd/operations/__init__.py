"""What operators do by hand, shared by the CLI and the web side: send books in order,
list and redrive dead letters. Works on bookd.core.ports' queues; imports bookd.core only.
"""
