"""Our s3prl downstream tasks: one package per ``-d`` name, each with an ``expert`` module that registers it.

See :mod:`superb_redundancy.hub.downstreams` for how s3prl's runner finds them.
"""
