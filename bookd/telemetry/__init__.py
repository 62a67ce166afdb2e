"""What bookd tells the world about itself: Prometheus metrics and log lines.

Implements bookd.core.outcomes for the rules. Imports bookd.core only.
"""
