"""The ``archipelago.dev/v1alpha1`` API: pydantic models of the custom resources.

The CRDs in ``crds/`` are generated from these models (``archipelago.api.crd``), so each
field is declared once. Pure: no Kubernetes client, no kopf.
"""

GROUP = "archipelago.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
