"""Metrics and the report of running app instances: what ``--metrics`` serves.

:mod:`.catalog` names every metric; :mod:`.snapshot` is the plain data a worker's counters
are shipped as and how the parent adds them up; :mod:`.exposition` turns snapshots into
the Prometheus text format with ``prometheus_client``; :mod:`.listener` serves it on its
own address. Only :mod:`.exposition` imports ``prometheus_client``, and only when
``--metrics`` is set.
"""
