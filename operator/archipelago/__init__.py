"""Archipelago: a Kubernetes-native, topology-aware scheduler for heterogeneous AI accelerators."""
