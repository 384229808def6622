"""Label and annotation keys Archipelago reads and writes, each declared once.

Pods the operator creates carry the ``POD_*`` annotations: they are the durable record of
the allocation ledger, which is rebuilt from them when the operator starts.
"""

PREFIX = "archipelago.dev/"

# Labels on pods the operator creates (selectable).
JOB_KIND = PREFIX + "kind"
"""The owning workload's kind: ``TrainingJob`` or ``InferenceService``."""
JOB_NAME = PREFIX + "job"
"""The owning workload's name."""
GANG = PREFIX + "gang"
"""The gang the pod belongs to (a job's name; ``<service>-<i>`` for inference replica ``i``)."""
ROLE = PREFIX + "role"
"""The pod's replica set (``launcher``, ``worker``, ``server``)."""
INDEX = PREFIX + "index"
"""The pod's index inside its replica set."""
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "archipelago"

# Annotations on pods: the allocation, exactly.
POD_CARDS = PREFIX + "cards"
"""Card indices on the pod's node, comma-separated (``"0,1,2,3"``); empty for a pod without cards."""
POD_MILLI = PREFIX + "milli-per-card"
"""Milli-cards held on each of those cards (1000 = whole card)."""
POD_DEVICE_MEMORY = PREFIX + "device-memory-mib"
"""Device memory held on each of those cards, MiB."""
POD_CPU = PREFIX + "cpu-milli"
"""Cpu the ledger holds for the pod, milli-cores."""
POD_MEMORY = PREFIX + "memory-mib"
"""Memory the ledger holds for the pod, MiB."""
POD_GANG_PODS = PREFIX + "gang-pods"
"""How many pods the placement gave the gang: fewer pods alive means a half gang."""
POD_ATTEMPT = PREFIX + "attempt"
"""The gang's attempt (restarts so far) when the pod was created."""
POD_STARTED_AT = PREFIX + "started-at"
"""When the gang's placement was applied (RFC 3339)."""

# On workloads.
CHECKPOINTED_AT = PREFIX + "checkpointed-at"
"""Set by a job (RFC 3339) when it last wrote a checkpoint: work before it survives preemption."""

# On nodes.
DEVICE_MODEL = PREFIX + "device-model"
"""Overrides the card model read from device-plugin labels (``H800``, ``Ascend910B``)."""
UNHEALTHY_CARDS = PREFIX + "unhealthy-cards"
"""Card indices to treat as unhealthy, comma-separated."""
