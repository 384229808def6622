"""The end-to-end suite: the operator on a kind cluster with fake GPU and NPU servers (README.md)."""
